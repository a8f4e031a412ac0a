"""sha256 of every file under a results/ folder, for before/after comparisons of a refactor
(issue 21: the demo's outputs byte-identical). Run-time fields (wall times, peak memory) are
blanked in the JSON/CSV files that carry them; logs and benchmarks live outside results/.

    python bench/params/results_digest.py results > digest.txt
    diff <(python bench/params/results_digest.py /before/results) <(python ... /after/results)
"""
import hashlib
import json
import re
import sys
from pathlib import Path

# Keys whose values are measurements of the run, not results.
RUN_TIME_KEY = re.compile(r"(seconds|_s$|^time|elapsed|rss|wall|started|finished|date|host|duration|stamp)", re.I)


def scrub(value):
    if isinstance(value, dict):
        return {k: ("<run-time>" if RUN_TIME_KEY.search(k) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def digest(path):
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            data = json.dumps(scrub(json.loads(data)), sort_keys=True).encode()
        except ValueError:
            pass
    if path.suffix == ".csv" and path.name in ("history.csv",):
        lines = data.decode().splitlines()
        header = lines[0].split(",") if lines else []
        drop = {i for i, h in enumerate(header) if RUN_TIME_KEY.search(h)}
        data = "\n".join(",".join(f for i, f in enumerate(l.split(",")) if i not in drop) for l in lines).encode()
    return hashlib.sha256(data).hexdigest()


def main(root):
    root = Path(root)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        print(f"{digest(p)}  {p.relative_to(root)}")


if __name__ == "__main__":
    main(sys.argv[1])
