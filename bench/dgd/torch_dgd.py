#!/usr/bin/env python3
"""PyTorch twin of `pgen-train --model dgd --bench-steps N`: the conditional DGD of SPEC §4 at
the real sizes, N training steps on the first `--batch-size` training cells, one JSON line out.

Same data (the ingest cache counts.parquet + obs.parquet, minus the --validation ids), same
cells (the first B training cells in obs order), same conditioning (one-hot cell_type,
plate_name, well with each column's levels sorted, fitted on all training cells), same model
(Linear(D+C→256) ReLU Linear(256→1024) ReLU Linear(1024→G), PyTorch's default init, which is
the distribution pgen-train draws from), same loss and optimisers as pgen-train's dgd_pass:

    loss = (Σ_cells NB NLL − Σ_cells log p_GMM(z) − (B/N)·log p(GMM parameters)) / B

with m = M·sigmoid(logit) (M = the cell's max count, at least 1), r = exp(θ) + 1 (θ = 0, so
r = 2), the full lgamma form of log NB, a 1-component diagonal GMM with a softball prior on its
means, a Gaussian prior on its log-precisions and a Dirichlet(α) prior on its weights; Adam
(betas 0.5/0.7, eps 1e-8): decoder + θ lr 2e-3, mixture lr 1e-1, per-cell latents (N × D,
initialised at 0) lr 1e-2. In the benchmark every step is a whole pass over the one batch, so
the latents take one Adam step per step, as in pgen-train.

A step is timed from densifying the batch's counts to loss.item() after all three optimiser
steps (pgen-train's step likewise builds its batch and one-hot matrix, runs forward, backward and
the optimisers). seconds_per_step is the mean over steps 2..N (step 1 warms up).

--loss trivial replaces the NB likelihood by mean(logit²) (everything else unchanged), to show
what the likelihood costs.

--autocast runs the decoder under torch.autocast("cpu", dtype=torch.bfloat16) (its Linear layers
in bf16, oneDNN on AMX / AVX512-BF16 where the CPU has them), its output cast back to f32 for the
loss: PyTorch's counterpart of `pgen-train --set precision=bf16`.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

GENES_KEY = b"perturbgen.genes"
COVARIATES = ["cell_type", "plate_name", "well"]


def load(counts_path, obs_path, validation_path, batch_size):
    """First `batch_size` training cells as CSR (float32 counts), their one-hot codes, N, G, C."""
    val = {line.strip() for line in open(validation_path) if line.strip()}
    obs = pq.read_table(obs_path, columns=["obs_id"] + COVARIATES).to_pydict()
    train = [i for i, o in enumerate(obs["obs_id"]) if o not in val]
    n_train = len(train)
    # Covariate levels seen in training, sorted; offsets into the one-hot vector.
    codes, offset = [], 0
    for col in COVARIATES:
        values = [obs[col][i] for i in train]
        levels = sorted(set(values))
        index = {lv: j for j, lv in enumerate(levels)}
        codes.append([offset + index[v] for v in values[:batch_size]])
        offset += len(levels)
    width = offset
    codes = torch.tensor(codes, dtype=torch.int64).t().contiguous()  # [B, n_covariates]

    ids = [obs["obs_id"][i] for i in train[:batch_size]]
    row_of = {o: r for r, o in enumerate(ids)}
    pf = pq.ParquetFile(counts_path)
    genes = json.loads(pf.metadata.metadata[GENES_KEY])
    gene_of = {g: j for j, g in enumerate(genes)}
    rows, cols, vals = [], [], []
    for rg in range(pf.num_row_groups):
        t = pf.read_row_group(rg, columns=["obs_id", "gene", "count"])
        oid = t.column("obs_id").combine_chunks()
        gen = t.column("gene").combine_chunks()
        cnt = t.column("count").to_numpy()
        if isinstance(oid, pa.DictionaryArray):
            omap = np.array([row_of.get(s, -1) for s in oid.dictionary.to_pylist()], dtype=np.int64)
            r = omap[oid.indices.to_numpy()]
        else:
            r = np.array([row_of.get(s, -1) for s in oid.to_pylist()], dtype=np.int64)
        keep = r >= 0
        if not keep.any():
            continue
        if isinstance(gen, pa.DictionaryArray):
            gmap = np.array([gene_of[s] for s in gen.dictionary.to_pylist()], dtype=np.int64)
            c = gmap[gen.indices.to_numpy()[keep]]
        else:
            c = np.array([gene_of[s] for s in gen.filter(pa.array(keep)).to_pylist()], dtype=np.int64)
        rows.append(r[keep])
        cols.append(c)
        vals.append(cnt[keep])
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals).astype(np.float32)
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    b = len(ids)
    indptr = np.zeros(b + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    scale = np.ones(b, dtype=np.float32)
    np.maximum.at(scale, rows, vals)  # M = max count, at least 1
    return {
        "indptr": torch.from_numpy(indptr), "indices": torch.from_numpy(cols), "data": torch.from_numpy(vals),
        "scale": torch.from_numpy(scale), "codes": codes, "n_train": n_train, "n_genes": len(genes),
        "width": width, "nnz": int(len(vals)),
    }


class Gmm(torch.nn.Module):
    """Diagonal Gaussian mixture with the DGD's priors (the scDGD reference's GaussianMixture)."""

    def __init__(self, k, dim, radius=1.0, sharpness=5.0, sd_init=0.05, logprec_sd=1.0, alpha=1.0):
        super().__init__()
        self.dim, self.radius, self.sharpness, self.logprec_sd, self.alpha = dim, radius, sharpness, logprec_sd, alpha
        self.centre = -2.0 * math.log(sd_init)
        d = torch.randn(k, dim)
        d = d / d.norm(dim=1, keepdim=True) * radius * torch.rand(k, 1) ** (1.0 / dim)  # uniform in the ball
        self.mean = torch.nn.Parameter(d)
        self.logprec = torch.nn.Parameter(torch.full((k, dim), self.centre))
        self.weight = torch.nn.Parameter(torch.zeros(k))

    def log_prob(self, z):  # [B, D] → [B]
        quad = ((z.unsqueeze(1) - self.mean.unsqueeze(0)) ** 2 * self.logprec.exp().unsqueeze(0)).sum(-1)
        norm = 0.5 * self.logprec.sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return torch.logsumexp(-0.5 * quad + norm + torch.log_softmax(self.weight, 0), dim=1)

    def log_prior(self):
        d = self.dim
        log_volume = 0.5 * d * math.log(math.pi) + d * math.log(self.radius) - math.lgamma(1 + 0.5 * d)
        norm = ((self.mean ** 2).sum(-1) + 1e-12).sqrt()
        softball = (-log_volume - F.softplus(self.sharpness * (norm / self.radius - 1))).sum()
        zs = (self.logprec - self.centre) / self.logprec_sd
        gauss = -0.5 * (zs ** 2).sum() - zs.numel() * math.log(self.logprec_sd * math.sqrt(2 * math.pi))
        dirichlet = (self.alpha - 1) * torch.log_softmax(self.weight, 0).sum()
        return softball + gauss + dirichlet


def nb_nll(x, logits, scale, theta):
    """Per-cell −log NB(x; m, r), m = M·sigmoid(logit), r = exp θ + 1 (dense, full lgamma form)."""
    r = theta.exp() + 1
    log_m = scale.log().unsqueeze(1) + F.logsigmoid(logits)
    m = log_m.exp()
    log_rm = (r + m).log()
    # r·log(r/(r+m)) written as −r·log1p(m/r), as pgen-train does (exact in f32 when m ≪ r).
    ll = torch.lgamma(x + r) - torch.lgamma(r) - torch.lgamma(x + 1) + x * (log_m - log_rm) - r * torch.log1p(m / r)
    return -ll.sum(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", required=True)
    p.add_argument("--obs", required=True)
    p.add_argument("--validation", required=True)
    p.add_argument("--bench-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latent-dim", type=int, default=5)
    p.add_argument("--loss", choices=["nb", "trivial"], default="nb")
    p.add_argument("--fused-adam", action="store_true", help="torch.optim.Adam(fused=True) instead of the default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", action="store_true", help="decoder under torch.autocast('cpu', dtype=torch.bfloat16)")
    p.add_argument("--compile", choices=["none", "loss", "forward"], default="none",
                   help="torch.compile (inductor): loss = the NB likelihood and the mixture's log-densities; "
                        "forward = the whole forward pass and loss (decoder included), backward through AOTAutograd")
    p.add_argument("--warmup", type=int, default=None,
                   help="steps left out of the mean (default 1; 3 with --compile: compilation and recompiles)")
    args = p.parse_args()
    warmup = args.warmup if args.warmup is not None else (3 if args.compile != "none" else 1)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    data = load(args.counts, args.obs, args.validation, args.batch_size)
    load_s = time.perf_counter() - t0
    b, g, w, n, d = len(data["scale"]), data["n_genes"], data["width"], data["n_train"], args.latent_dim

    decoder = torch.nn.Sequential(
        torch.nn.Linear(d + w, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, g)
    )
    theta = torch.nn.Parameter(torch.full((g,), math.log(2.0 - 1.0)))  # r = exp θ + 1 = 2
    gmm = Gmm(1, d)
    z = torch.nn.Parameter(torch.zeros(n, d))  # every training cell's latent; the batch is rows 0..B-1
    kw = {"betas": (0.5, 0.7), "eps": 1e-8}
    if args.fused_adam:
        kw["fused"] = True
    opt_net = torch.optim.Adam(list(decoder.parameters()) + [theta], lr=2e-3, **kw)
    opt_mix = torch.optim.Adam(gmm.parameters(), lr=1e-1, **kw)
    opt_z = torch.optim.Adam([z], lr=1e-2, **kw)
    opts = (opt_net, opt_mix, opt_z)
    # Flat positions of the batch's non-zeros in the dense B × G matrix.
    rows = torch.repeat_interleave(torch.arange(b), data["indptr"][1:] - data["indptr"][:-1])
    flat, vals = rows * g + data["indices"], data["data"]
    scale, codes = data["scale"], data["codes"]

    nll_of, log_prob, log_prior = nb_nll, gmm.log_prob, gmm.log_prior
    if args.compile == "loss":
        nll_of, log_prob, log_prior = torch.compile(nb_nll), torch.compile(gmm.log_prob), torch.compile(gmm.log_prior)

    def forward(x, c, zb):
        if args.autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = decoder(torch.cat([zb, c], 1))
            logits = logits.float()
        else:
            logits = decoder(torch.cat([zb, c], 1))
        if args.loss == "nb":
            nll = nll_of(x, logits, scale, theta).sum()
        else:
            nll = (logits ** 2).mean() + 0 * theta.sum()
        lpz = log_prob(zb).sum()
        return (nll - lpz - log_prior() * (b / n)) / b, nll

    if args.compile == "forward":
        forward = torch.compile(forward)

    def step():
        x = torch.zeros(b * g).index_put_((flat,), vals).view(b, g)
        c = torch.zeros(b, w).scatter_(1, codes, 1.0)
        loss, nll = forward(x, c, z[:b])
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
        return loss.item(), nll.item() / b

    seconds, losses = [], []
    for _ in range(args.bench_steps):
        t = time.perf_counter()
        loss, nll = step()
        seconds.append(time.perf_counter() - t)
        losses.append((loss, nll))
    steady = seconds[warmup:] if len(seconds) > warmup else seconds[-1:]
    mean = sum(steady) / len(steady)
    out = {
        "steps": args.bench_steps, "batch": b, "threads": args.threads, "seconds_per_step": round(mean, 4),
        "cells_per_second": round(b / mean, 1), "step_seconds": [round(s, 3) for s in seconds],
        "first_loss": round(losses[0][0], 3), "first_nll_per_cell": round(losses[0][1], 3),
        "last_loss": round(losses[-1][0], 3), "loss": args.loss, "fused_adam": args.fused_adam, "autocast": args.autocast,
        "compile": args.compile, "warmup_steps": warmup,
        "torch": torch.__version__, "genes": g, "covariate_columns": w, "train_cells": n,
        "batch_nonzeros": data["nnz"], "load_seconds": round(load_s, 2),
        "num_threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
