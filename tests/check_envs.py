"""CI lint of the conda environments (envs/*.yaml, used with `snakemake --sdm conda`): each file
is YAML with a name, channels and dependencies; every `conda:` directive of the workflow names
one of them; R, limma, edgeR and Rust are pinned to the versions the system set-up uses. Exit 1
with one line per problem."""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
problems = []
envs = {}
for path in sorted((ROOT / "envs").glob("*.yaml")):
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        problems.append(f"{path.relative_to(ROOT)}: not YAML ({' '.join(str(e).split())})")
        continue
    for key in ("name", "channels", "dependencies"):
        if not doc or key not in doc:
            problems.append(f"{path.relative_to(ROOT)}: missing `{key}`")
    envs[path.name] = [str(d) for d in (doc or {}).get("dependencies", [])]

used = set()
for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
    for line_no, line in enumerate(smk.read_text().splitlines(), 1):
        if line.strip() == "conda:":
            continue
        m = re.match(r'\s*"\.\./\.\./envs/([^"]+)"', line)
        if m:
            used.add(m.group(1))
            if m.group(1) not in envs:
                problems.append(f"{smk.relative_to(ROOT)}:{line_no}: conda env envs/{m.group(1)} does not exist")
if not used:
    problems.append("workflow/rules: no conda: directives found")

PINS = {"limma.yaml": ["r-base=4.2", "bioconductor-limma=3.54", "bioconductor-edger=3.40"], "perturbgen.yaml": ["rust=1.95"]}
for name, pins in PINS.items():
    for pin in pins:
        if pin not in envs.get(name, []):
            problems.append(f"envs/{name}: expected the pin `{pin}` (the system set-up's version)")

for p in problems:
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
