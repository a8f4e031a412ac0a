//! What the simulator is asked to produce: scale knobs and presets.
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Small enough that the whole DAG runs in minutes on 2 cores.
    Demo,
    /// Kaggle scale: 18,211 genes, 144 compounds, ~240k training cells.
    Kaggle,
    /// A typical stimulation study (the shape of a public PBMC interferon data set): a few
    /// donors with one plate each, one well per condition (the control and `n_compounds`
    /// stimuli), five PBMC cell types, no positive controls, no plate rows to speak of.
    Study,
}

/// A cell type with its share of the cells and its median library size.
#[derive(Debug, Clone, Serialize)]
pub struct CellTypeSpec {
    pub name: String,
    pub proportion: f64,
    pub library_median: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub preset: Preset,
    pub seed: u64,
    /// Real Kaggle layout files (gene names, id_map pairs, de_train row keys, test wells).
    pub layout_dir: Option<PathBuf>,
    pub n_genes: usize,
    /// Compounds other than the controls; split over the two plate layouts.
    pub n_compounds: usize,
    /// Expected number of cells in `adata_train.parquet` (withheld test cells come on top).
    pub n_train_cells: usize,
    pub n_donors: usize,
    /// Wells per plate given to DMSO and to the two positive controls (half each).
    pub dmso_wells: usize,
    pub positive_control_wells: usize,
    /// Compounds (per plate layout) whose B and Myeloid cells stay in training.
    pub measured_in_all_per_layout: usize,
    pub cell_types: Vec<CellTypeSpec>,
    /// Spread (sd of log) of library sizes around a cell type's median.
    pub library_sdlog: f64,
    /// Spread (sd of log) of the genes' baseline expression: sets sparsity and the max count.
    pub baseline_sdlog: f64,
    /// Share of a compound's effect that is common to all cell types (0..1).
    pub effect_sharing: f64,
    /// Probability that a training cell has one (obs_id, gene) pair listed as excluded.
    pub excluded_rate: f64,
}

/// The six PBMC cell types of the competition with shares and library sizes of the order seen
/// in the data (approximate: the simulator's choice, not a measurement).
fn pbmc_cell_types(scale: f64) -> Vec<CellTypeSpec> {
    [
        ("B cells", 0.07, 3800.0),
        ("Myeloid cells", 0.09, 5200.0),
        ("NK cells", 0.24, 3600.0),
        ("T cells CD4+", 0.40, 3300.0),
        ("T cells CD8+", 0.08, 3400.0),
        ("T regulatory cells", 0.12, 3200.0),
    ]
    .into_iter()
    .map(|(n, p, l)| CellTypeSpec { name: n.to_string(), proportion: p, library_median: l * scale })
    .collect()
}

/// The cell types of a PBMC stimulation study (names as in scanpy's PBMC tutorials).
fn study_cell_types() -> Vec<CellTypeSpec> {
    [("CD14+ Monocytes", 0.22, 2600.0), ("B cells", 0.14, 1900.0), ("CD4 T cells", 0.34, 1700.0), ("NK cells", 0.14, 1800.0), ("CD8 T cells", 0.16, 1700.0)]
        .into_iter()
        .map(|(n, p, l)| CellTypeSpec { name: n.to_string(), proportion: p, library_median: l })
        .collect()
}

impl SimConfig {
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Study => Self {
                preset,
                seed: 0,
                layout_dir: None,
                n_genes: 500,
                n_compounds: 1,
                n_train_cells: 8_000,
                n_donors: 2,
                dmso_wells: 1,
                positive_control_wells: 0,
                measured_in_all_per_layout: 0,
                cell_types: study_cell_types(),
                library_sdlog: 0.35,
                baseline_sdlog: 1.6,
                effect_sharing: 0.7,
                excluded_rate: 0.0,
            },
            Preset::Demo => Self {
                preset,
                seed: 0,
                layout_dir: None,
                n_genes: 1000,
                n_compounds: 16,
                n_train_cells: 24_000,
                n_donors: 3,
                dmso_wells: 8,
                positive_control_wells: 2,
                measured_in_all_per_layout: 2,
                // Fewer genes share the library: keep totals in the low thousands.
                cell_types: pbmc_cell_types(0.5),
                library_sdlog: 0.35,
                baseline_sdlog: 1.6,
                effect_sharing: 0.7,
                excluded_rate: 0.01,
            },
            Preset::Kaggle => Self {
                preset,
                seed: 0,
                layout_dir: None,
                n_genes: 18_211,
                n_compounds: 144,
                n_train_cells: 240_090,
                n_donors: 3,
                dmso_wells: 8,
                positive_control_wells: 16,
                measured_in_all_per_layout: 8,
                cell_types: pbmc_cell_types(1.0),
                library_sdlog: 0.35,
                baseline_sdlog: 2.5,
                effect_sharing: 0.7,
                excluded_rate: 0.001,
            },
        }
    }
}
