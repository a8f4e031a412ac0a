//! The field's per-row metrics (SPEC §5): one (cell type, compound) row's prediction against its
//! true signed −log10 p over the genes. OP3 scores RMSE, MAE, Pearson, Spearman and cosine per
//! row, averaged over rows, with the truth clipped to ±4 (predictions not clipped) and a
//! non-finite correlation counted as 0; cell-eval adds direction agreement on the DE genes, the
//! overlap of the top genes and a perturbation-discrimination score.
//!
//! Written here rather than taken from a crate: no Rust statistics crate has OP3's conventions
//! (0 for an undefined correlation, average ranks for ties as scipy.stats.spearmanr), and the
//! numbers are checked against numpy/scipy (tests/python/test_scores.py).

/// OP3's clip of the truth for its headline table.
pub const OP3_TRUTH_CLIP: f64 = 4.0;
/// A gene is truly DE in a row when its |signed −log10 p| reaches −log10 0.05.
pub const DE_THRESHOLD: f64 = 1.301_029_995_663_981_3;
/// The top-k gene overlaps reported.
pub const TOP_K: [usize; 3] = [50, 100, 200];

/// Root mean squared error.
pub fn rmse(truth: &[f64], prediction: &[f64]) -> f64 {
    let sse: f64 = truth.iter().zip(prediction).map(|(t, p)| (t - p) * (t - p)).sum();
    (sse / truth.len() as f64).sqrt()
}

/// Mean absolute error.
pub fn mae(truth: &[f64], prediction: &[f64]) -> f64 {
    truth.iter().zip(prediction).map(|(t, p)| (t - p).abs()).sum::<f64>() / truth.len() as f64
}

/// Pearson correlation; 0 where it is undefined (a constant row), as OP3 counts it.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    finite_or_zero(sxy / (sxx * syy).sqrt())
}

/// Spearman correlation: Pearson of the average ranks (ties share their mean rank).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Cosine similarity; 0 where a vector is all zeros.
pub fn cosine(x: &[f64], y: &[f64]) -> f64 {
    let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    finite_or_zero(dot / (norm(x) * norm(y)))
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// 1-based ranks, ties given the mean of the ranks they span.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0; // ranks i+1 ..= j
        for &k in &order[i..j] {
            ranks[k] = mean_rank;
        }
        i = j;
    }
    ranks
}

/// The truth clipped to ±`bound`.
pub fn clipped(v: &[f64], bound: f64) -> Vec<f64> {
    v.iter().map(|x| x.clamp(-bound, bound)).collect()
}

/// Of the truly DE genes (|truth| ≥ −log10 0.05), the fraction whose prediction has the same
/// sign (a prediction of 0 agrees with neither sign); None when the row has no DE gene.
pub fn sign_agreement(truth: &[f64], prediction: &[f64]) -> Option<f64> {
    let (mut de, mut agree) = (0usize, 0usize);
    for (t, p) in truth.iter().zip(prediction) {
        if t.abs() >= DE_THRESHOLD {
            de += 1;
            if (*t > 0.0 && *p > 0.0) || (*t < 0.0 && *p < 0.0) {
                agree += 1;
            }
        }
    }
    (de > 0).then(|| agree as f64 / de as f64)
}

/// The `k` genes of largest |value| (ties by gene order, so a constant prediction's top genes
/// are its first ones).
fn top_genes(v: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Fraction of the truth's top-k genes (by |value|) that are among the prediction's top k;
/// k is capped at the number of genes.
pub fn top_k_overlap(truth: &[f64], prediction: &[f64], k: usize) -> f64 {
    let k = k.min(truth.len());
    if k == 0 {
        return 0.0;
    }
    let mut in_prediction = vec![false; truth.len()];
    for g in top_genes(prediction, k) {
        in_prediction[g] = true;
    }
    top_genes(truth, k).into_iter().filter(|&g| in_prediction[g]).count() as f64 / k as f64
}

/// Perturbation discrimination: for each row i, the fraction of the other rows' truths that lie
/// closer (Euclidean) to prediction i than truth i does, ties counted half — 0 when the
/// prediction is nearest its own truth, 1 when it is farthest. None with fewer than two rows.
/// `truths[i]` and `predictions[i]` are row i's gene vectors, all of one length.
pub fn discrimination(truths: &[&[f64]], predictions: &[&[f64]]) -> Vec<Option<f64>> {
    let n = truths.len();
    if n < 2 {
        return vec![None; n];
    }
    let dist2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    (0..n)
        .map(|i| {
            let own = dist2(predictions[i], truths[i]);
            let mut closer = 0.0;
            for j in (0..n).filter(|&j| j != i) {
                let d = dist2(predictions[i], truths[j]);
                if d < own {
                    closer += 1.0;
                } else if d == own {
                    closer += 0.5;
                }
            }
            Some(closer / (n - 1) as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let t = [1.0, 2.0, 3.0];
        let p = [1.0, 2.0, 5.0];
        assert!((rmse(&t, &p) - (4.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((mae(&t, &p) - 2.0 / 3.0).abs() < 1e-15);
        // x − x̄ = (−1, 0, 1), y − ȳ = (−5/3, −2/3, 7/3): r = 4 / sqrt(2 · 78/9).
        assert!((pearson(&t, &p) - 4.0 / (2.0f64 * 78.0 / 9.0).sqrt()).abs() < 1e-14);
        assert_eq!(spearman(&t, &p), 1.0);
        assert!((cosine(&t, &p) - 20.0 / (14.0f64.sqrt() * 30.0f64.sqrt())).abs() < 1e-15);
        assert_eq!(pearson(&t, &[0.0; 3]), 0.0, "undefined correlation counts as 0");
        assert_eq!(cosine(&t, &[0.0; 3]), 0.0);
        assert_eq!(average_ranks(&[2.0, 1.0, 2.0, 0.0]), vec![3.5, 2.0, 3.5, 1.0]);
    }

    #[test]
    fn de_gene_metrics() {
        let t = [3.0, -2.0, 0.5, -0.1];
        assert_eq!(sign_agreement(&t, &[1.0, 1.0, -9.0, 9.0]), Some(0.5));
        assert_eq!(sign_agreement(&t, &[0.0, 0.0, 0.0, 0.0]), Some(0.0));
        assert_eq!(sign_agreement(&[0.5, 1.0], &[1.0, 1.0]), None);
        assert_eq!(top_k_overlap(&t, &[0.0, 5.0, 0.0, 4.0], 2), 0.5);
        assert_eq!(top_k_overlap(&t, &[0.0; 4], 2), 1.0, "ties by gene order: genes 0 and 1");
        assert_eq!(top_k_overlap(&t, &t, 50), 1.0, "k capped at the gene count");
    }

    #[test]
    fn discrimination_ranks_own_truth() {
        let truths: [&[f64]; 3] = [&[0.0, 0.0], &[1.0, 0.0], &[5.0, 5.0]];
        let preds: [&[f64]; 3] = [&[0.1, 0.0], &[0.4, 0.0], &[1.0, 0.0]];
        // Row 0 is nearest its truth; row 1 is nearer truth 0 (0.16) than its own (0.36);
        // row 2 is at distance 0 from truth 1, its own is the farthest.
        assert_eq!(discrimination(&truths, &preds), vec![Some(0.0), Some(0.5), Some(1.0)]);
        assert_eq!(discrimination(&truths[..1], &preds[..1]), vec![None]);
    }
}
