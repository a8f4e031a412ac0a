"""pgen-forest end to end (forests → predicted pseudo-bulk → limma in R → DE table).

The fixture pseudo-bulk is built here with numpy: negative-binomial counts around known additive
log-scale effects (cell type + compound, donor and plate noise). The targets are pairs held out
of it; the DE the forest route computes for them must point the true way on the compound's
genes, the layout must be de_train's, the bytes must not depend on --threads, and bad inputs
must give one-line errors, exit 1 and no output.
"""

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, _binary, run
from test_xgb import fails

KEYS = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES"]
CELL_TYPES = ["B cells", "Myeloid cells", "NK cells", "T cells CD4+"]
COMPOUNDS = ["Dimethyl Sulfoxide", "Cpd A", "Cpd B", "Cpd C", "Cpd D"]
N_GENES = 40
SCRIPT = REPO / "scripts" / "limma_de.R"


@pytest.fixture(scope="module")
def forest_bin():
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript not found (R with limma and edgeR: scripts/setup)", pytrace=False)
    return _binary("pgen-forest")


def compound_effect(k):
    """Compound k (1..4) moves genes 5(k-1)..5(k-1)+4 by ±1.5 (log scale); DMSO none."""
    eff = np.zeros(N_GENES)
    if k > 0:
        eff[5 * (k - 1):5 * k] = [1.5, -1.5, 1.5, -1.5, 1.5]
    return eff


def fixture_pseudobulk(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(4.0, 0.7, N_GENES)
    ct_eff = np.zeros((len(CELL_TYPES), N_GENES))
    for c in range(len(CELL_TYPES)):
        ct_eff[c, 25 + 3 * c:28 + 3 * c] = 1.0  # cell-type genes, apart from the compounds'
    rows = []
    for plate in range(4):
        donor = plate // 2
        plate_eff = rng.normal(0, 0.05, N_GENES)
        wells = [(0, f"{r}12", r) for r in "DEFG"]  # DMSO in every row, as on the real plates
        wells += [(k, f"{'DEFG'[(k + plate) % 4]}{k + 1}", "DEFG"[(k + plate) % 4]) for k in range(1, 5)]
        for c, ct in enumerate(CELL_TYPES):
            for k, well, row in wells:
                mu = np.exp(base + ct_eff[c] + compound_effect(k) + plate_eff)
                mu *= rng.uniform(0.8, 1.2) * 30
                counts = rng.negative_binomial(20, 20 / (20 + mu))
                rows.append([ct, f"plate_{plate}", well, f"donor_{donor}", row, COMPOUNDS[k],
                             f"LINCS-{k}", f"C{k}", k == 0, int(rng.integers(10, 40)), *counts.astype(float)])
    genes = [f"GENE{g}" for g in range(N_GENES)]
    return pd.DataFrame(rows, columns=KEYS + ["control", "n_cells"] + genes)


def write_inputs(tmp_path, pairs):
    pb = fixture_pseudobulk()
    pb.to_parquet(tmp_path / "train.parquet", index=False)
    ids = pd.DataFrame({"id": range(len(pairs)), "cell_type": [p[0] for p in pairs], "sm_name": [p[1] for p in pairs]})
    ids.to_csv(tmp_path / "targets.csv", index=False)
    return tmp_path / "train.parquet", tmp_path / "targets.csv"


def forest_cmd(forest_bin, pb, targets, out, *extra):
    return [forest_bin, "--pseudobulk", pb, "--targets", targets, "--script", SCRIPT, "--set", "n_trees=40",
            *extra, "--out", out]


TARGETS = [("B cells", "Cpd A"), ("B cells", "Cpd C"), ("Myeloid cells", "Cpd B")]


def test_forest_de_points_the_true_way(forest_bin, tmp_path):
    pb, targets = write_inputs(tmp_path, TARGETS)
    out1, out2 = tmp_path / "f1.parquet", tmp_path / "f2.parquet"
    run(forest_cmd(forest_bin, pb, targets, out1, "--threads", 1, "--out-pseudobulk", tmp_path / "pb1.parquet"))
    run(forest_cmd(forest_bin, pb, targets, out2, "--threads", 2, "--out-pseudobulk", tmp_path / "pb2.parquet"))
    # Same bytes whatever the thread count (forests and the R stage).
    assert out1.read_bytes() == out2.read_bytes()
    assert (tmp_path / "pb1.parquet").read_bytes() == (tmp_path / "pb2.parquet").read_bytes()

    de = pd.read_parquet(out1)
    assert list(de.columns[:5]) == ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
    assert sorted(zip(de.cell_type, de.sm_name)) == sorted(TARGETS)
    assert list(de.columns[5:]) == [f"GENE{g}" for g in range(N_GENES)]
    values = de.iloc[:, 5:].to_numpy()
    assert np.isfinite(values).all()

    predicted = pd.read_parquet(tmp_path / "pb1.parquet")
    # One predicted sample per (target, plate × well of its compound): 4 plates each.
    assert len(predicted) == 4 * len(TARGETS)
    assert (predicted.iloc[:, 10:].to_numpy() >= 0).all()

    for (ct, cp), vals in zip(zip(de.cell_type, de.sm_name), values):
        k = COMPOUNDS.index(cp)
        eff = compound_effect(k)
        affected = eff != 0
        # Every affected gene is significant in the true direction (|signed -log10 p| > 2),
        # and they outrank the unaffected genes on average.
        assert (np.sign(vals[affected]) == np.sign(eff[affected])).all(), (ct, cp, vals[affected])
        assert (np.abs(vals[affected]) > 2).all(), (ct, cp, vals[affected])
        assert np.abs(vals[affected]).mean() > 2 * np.abs(vals[~affected]).mean(), (ct, cp)


def test_forest_predicted_controls_reference(forest_bin, tmp_path):
    """forest.reference predicted_controls: the targets are contrasted with the forests' own
    predictions of their cell type's DMSO wells, the real samples staying in the fit. Checked
    against pgen-limma run on the same samples composed here by hand, and against the fixture's
    known compound effects."""
    pb, targets = write_inputs(tmp_path, TARGETS)
    de = {}
    for ref in ("real", "predicted_controls"):
        out = tmp_path / f"{ref}.parquet"
        run(forest_cmd(forest_bin, pb, targets, out, "--set", f"reference={ref}", "--out-pseudobulk", tmp_path / f"{ref}_pb.parquet"))
        de[ref] = pd.read_parquet(out)
    predicted = pd.read_parquet(tmp_path / "predicted_controls_pb.parquet")
    train = pd.read_parquet(pb)
    # The targets' wells as before, then every DMSO well of each target cell type (4 per plate).
    assert len(predicted) == 4 * len(TARGETS) + 2 * 16
    controls = predicted[predicted.sm_name == COMPOUNDS[0]]
    want = train[(train.sm_name == COMPOUNDS[0]) & train.cell_type.isin(["B cells", "Myeloid cells"])]
    assert sorted(map(tuple, controls[KEYS].to_numpy())) == sorted(map(tuple, want[KEYS].to_numpy()))

    # The same DE from pgen-limma on the composed samples: real (minus the targets) with DMSO
    # renamed, plus the predicted ones, marked as such (the residual variance is the real ones').
    target_set = set(TARGETS)
    real = train[[(c, s) not in target_set for c, s in zip(train.cell_type, train.sm_name)]].copy()
    real.loc[real.sm_name == COMPOUNDS[0], "sm_name"] = f"{COMPOUNDS[0]} (measured)"
    real.to_parquet(tmp_path / "composed_real.parquet", index=False)
    predicted[real.columns].to_parquet(tmp_path / "composed_predicted.parquet", index=False)
    for ct in ("B cells", "Myeloid cells"):
        out = tmp_path / f"limma_{ct}.parquet"
        run([_binary("pgen-limma"), "--pseudobulk", tmp_path / "composed_real.parquet", "--predicted", tmp_path / "composed_predicted.parquet",
             "--cell-type", ct, "--targets", targets, "--script", SCRIPT, "--out", out])
        by_hand = pd.read_parquet(out).set_index(["cell_type", "sm_name"]).iloc[:, 3:]
        ours = de["predicted_controls"].set_index(["cell_type", "sm_name"]).loc[by_hand.index].iloc[:, 3:]
        np.testing.assert_allclose(ours.to_numpy(), by_hand.to_numpy(), rtol=1e-12)

    for i, (ct, cp) in enumerate(zip(de["predicted_controls"].cell_type, de["predicted_controls"].sm_name)):
        vals = de["predicted_controls"].iloc[i, 5:].to_numpy()
        eff = compound_effect(COMPOUNDS.index(cp))
        affected = eff != 0
        # The compound's genes still point the true way, and outrank the unaffected genes.
        assert (np.sign(vals[affected]) == np.sign(eff[affected])).all(), (ct, cp, vals[affected])
        assert np.abs(vals[affected]).mean() > 2 * np.abs(vals[~affected]).mean(), (ct, cp)


def test_forest_bad_inputs(forest_bin, tmp_path):
    pb, targets = write_inputs(tmp_path, TARGETS)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "forest.parquet"

    unseen = tmp_path / "unseen.csv"
    pd.DataFrame({"id": [0], "cell_type": ["B cells"], "sm_name": ["Novel X"]}).to_csv(unseen, index=False)
    fails(forest_cmd(forest_bin, pb, unseen, out), out, "unseen.csv", "row 1", "Novel X", "never measured")

    no_ct = tmp_path / "no_ct.csv"
    pd.DataFrame({"id": [0], "cell_type": ["Platelets"], "sm_name": ["Cpd A"]}).to_csv(no_ct, index=False)
    fails(forest_cmd(forest_bin, pb, no_ct, out), out, "no_ct.csv", "Platelets", "no training samples")

    fails(forest_cmd(forest_bin, pb, targets, out, "--section", 'de={"negative_control": "Water"}'), out, "negative-control", "Water")

    empty = tmp_path / "empty.parquet"
    pd.read_parquet(pb).iloc[:0].to_parquet(empty, index=False)
    fails(forest_cmd(forest_bin, empty, targets, out), out, "empty.parquet", "no samples")

    fails(forest_cmd(forest_bin, pb, targets, out, "--set", "features=[cell_type, SMILES]"), out, "forest.features", "SMILES")
    fails(forest_cmd(forest_bin, pb, targets, out, "--set", "target=both"), out, "forest.target", "genes", "pca")
    fails(forest_cmd(forest_bin, pb, targets, out, "--set", "min_samples_leaf=0"), out, "forest.min_samples_leaf")
