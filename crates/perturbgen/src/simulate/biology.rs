//! The generative model's parameters: per-gene baselines and dispersions, cell-type
//! programmes, donor and plate effects, and compound effects (log fold changes) that are
//! partly shared across cell types.
//!
//! Mean count of gene g in a cell of type t, donor d, plate p, treated with compound k:
//!   m = L · π[t,g] · exp(donor[d,g] + plate[p,g] + β[k,t,g])
//! with L the cell's library size and π[t,·] the cell type's baseline composition (sums to 1).
//! Counts are negative binomial with that mean and the gene's dispersion r[g].
//! β[k,t,g] = a_k · s_{k,t} · (w · shared[k,g] + (1 − w) · own[k,t,g]), both parts sparse
//! standard normals; w = `effect_sharing`. DMSO has β = 0; positive controls are strong.
use super::config::SimConfig;
use super::layout::{CompoundKind, Layout};
use super::rng::{stream, Purpose};
use rand::Rng;
use rand_distr::{Beta, Distribution, StandardNormal};

pub struct Biology {
    pub n_genes: usize,
    /// Baseline composition per cell type, row-major [cell type][gene].
    pub baseline: Vec<f64>,
    pub dispersion: Vec<f64>,
    /// log-scale offsets, [donor][gene] and [plate][gene].
    pub donor_effect: Vec<f64>,
    pub plate_effect: Vec<f64>,
    /// Natural-log fold changes, [compound][cell type][gene].
    pub effect: Vec<f64>,
    /// Share of a well's cells surviving each compound (toxicity lowers cell numbers).
    pub viability: Vec<f64>,
    n_cell_types: usize,
}

impl Biology {
    pub fn new(config: &SimConfig, layout: &Layout) -> Self {
        let g = layout.genes.len();
        let nt = layout.cell_types.len();
        let seed = config.seed;
        let normal = |rng: &mut rand_chacha::ChaCha8Rng| -> f64 { StandardNormal.sample(rng) };

        let mut rng = stream(seed, Purpose::Genes, 0);
        let base: Vec<f64> = (0..g).map(|_| config.baseline_sdlog * normal(&mut rng)).collect();
        let dispersion: Vec<f64> = (0..g).map(|_| (3.0f64.ln() + 0.5 * normal(&mut rng)).exp().clamp(0.3, 50.0)).collect();

        // Cell-type programmes: 5% marker genes with strong shifts, small noise elsewhere.
        let mut baseline = vec![0.0; nt * g];
        for t in 0..nt {
            let mut rng = stream(seed, Purpose::CellTypes, t as u64);
            let row = &mut baseline[t * g..(t + 1) * g];
            for (gi, v) in row.iter_mut().enumerate() {
                let marker = rng.random::<f64>() < 0.05;
                let shift = if marker { 1.2 * normal(&mut rng) } else { 0.15 * normal(&mut rng) };
                *v = base[gi] + shift;
            }
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for v in row.iter_mut() {
                *v = (*v - max).exp() / sum;
            }
        }
        let offsets = |purpose: Purpose, n: usize, sd: f64| -> Vec<f64> {
            (0..n)
                .flat_map(|i| {
                    let mut rng = stream(seed, purpose, i as u64);
                    (0..g).map(move |_| { let z: f64 = StandardNormal.sample(&mut rng); sd * z }).collect::<Vec<_>>()
                })
                .collect()
        };
        let donor_effect = offsets(Purpose::Donors, layout.donors.len(), 0.12);
        let plate_effect = offsets(Purpose::Plates, layout.plates.len(), 0.06);

        let nk = layout.compounds.len();
        let mut effect = vec![0.0; nk * nt * g];
        let mut viability = vec![1.0; nk];
        let w = config.effect_sharing.clamp(0.0, 1.0);
        for (k, compound) in layout.compounds.iter().enumerate() {
            let mut rng = stream(seed, Purpose::Compounds, k as u64);
            let (activity, affected) = match compound.kind {
                CompoundKind::NegativeControl => continue,
                CompoundKind::PositiveControl => (2.0, 0.25),
                // Most compounds do little; a few do a lot (log-normal activity).
                CompoundKind::Regular => {
                    let a = (0.6f64.ln() + 0.7 * normal(&mut rng)).exp().min(3.0);
                    let f = Beta::new(2.0, 30.0).expect("valid beta").sample(&mut rng);
                    (a, f)
                }
            };
            viability[k] = match compound.kind {
                CompoundKind::PositiveControl => 0.5,
                _ => 1.0 - 0.5 * Beta::new(1.0, 6.0).expect("valid beta").sample(&mut rng),
            };
            let shared: Vec<f64> = (0..g).map(|_| if rng.random::<f64>() < affected { normal(&mut rng) } else { 0.0 }).collect();
            for t in 0..nt {
                let scale = (0.3 * normal(&mut rng)).exp();
                let out = &mut effect[(k * nt + t) * g..(k * nt + t + 1) * g];
                for (gi, v) in out.iter_mut().enumerate() {
                    let own = if rng.random::<f64>() < affected { normal(&mut rng) } else { 0.0 };
                    // Capped at ×20 either way: larger shifts are rare in PBMC drug screens.
                    *v = (activity * scale * (w * shared[gi] + (1.0 - w) * own)).clamp(-3.0, 3.0);
                }
            }
        }
        Self { n_genes: g, baseline, dispersion, donor_effect, plate_effect, effect, viability, n_cell_types: nt }
    }

    /// Mean counts per unit library size of each gene for (cell type, donor, plate, compound).
    pub fn unit_means(&self, cell_type: usize, donor: usize, plate: usize, compound: usize, out: &mut Vec<f64>) {
        let g = self.n_genes;
        let base = &self.baseline[cell_type * g..(cell_type + 1) * g];
        let d = &self.donor_effect[donor * g..(donor + 1) * g];
        let p = &self.plate_effect[plate * g..(plate + 1) * g];
        let e = self.log_fold_change(compound, cell_type);
        out.clear();
        out.extend((0..g).map(|i| base[i] * (d[i] + p[i] + e[i]).exp()));
    }

    /// True natural-log fold changes of compound vs DMSO in a cell type.
    pub fn log_fold_change(&self, compound: usize, cell_type: usize) -> &[f64] {
        let g = self.n_genes;
        let i = compound * self.n_cell_types + cell_type;
        &self.effect[i * g..(i + 1) * g]
    }
}
