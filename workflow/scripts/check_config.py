"""Rule check_config: the config's cell types, compounds and hold-out pairs against the ingested
cells (results/ingest/obs.parquet), for runs whose cells could not be read when the workflow
loaded (a fresh simulation). The checks are workflow/scripts/config_checks.py's, the same the
workflow runs at parse time: a problem is one line `config: <key>: <reason>` (on the console and
in the log) and exit status 1, before split and filter run. On success it records what was
checked and from which input the obs.parquet was ingested, so that later parses can check
against that obs.parquet directly."""
import json
import os
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 (snakemake injects it)
import config_checks  # noqa: E402

sm = snakemake  # noqa: F821
# The checked keys come from the config itself, not from a param: once the cells exist every
# parse checks a changed config against them, so a change must not rerun this rule (a rerun
# here would hold back the split checkpoint's downstream in dry runs).
checked = config_checks.checked_config(sm.config)
source = json.loads(sm.params.source)

with open(sm.log[0], "w") as log:
    try:
        id_map = sm.input.id_map if "id_map" in sm.input.keys() else None
        cells = config_checks.check(checked, sm.input.exe, sm.input.obs, id_map)
        if cells is None:  # ingest's own output, just written: unreadable is a failure
            raise config_checks.ConfigError(f"{sm.input.obs}: cannot be read (see pgen-config cells)")
    except config_checks.ConfigError as e:
        for stream in (log, sys.stderr):
            print(f"config: {e}", file=stream)
        sys.exit(1)
    # The input ingest read, as it is now (ingest has just run from it).
    source["stamp"] = config_checks.file_stamp(source["path"])
    record = {
        "ok": True,
        "obs": sm.input.obs,
        "obs_stamp": config_checks.file_stamp(sm.input.obs),
        "source": source,
        "checked": checked,
        "cell_types": cells["cell_types"],
        "compounds": cells["compounds"],
    }
    tmp = f"{sm.output[0]}.tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, sm.output[0])
    print(f"config checked against {sm.input.obs}: {len(cells['cell_types'])} cell types, "
          f"{cells['compounds']} compounds", file=log)
