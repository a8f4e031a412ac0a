//! A minimal safe layer over XGBoost's C API (XGBoost 1.6.2, built from the source vendored by
//! the `xgboost-rs-sys` crate, the low-level half of `xgboost-rs` 0.3).
//!
//! We call the C API directly rather than through `xgboost-rs`' `Booster`/`DMatrix`: its
//! `DMatrix::from_dense` declares 0.0 the missing value (Python's default is NaN, and a one-hot
//! matrix is mostly zeros), its `Booster::train` always boosts a fixed number of rounds and its
//! `set_param` is private. Here a dense matrix uses NaN for missing, exactly like
//! `xgboost.DMatrix(numpy_array)`, and training is `XGBoosterUpdateOneIter` once per round,
//! exactly like `xgboost.train`, so both give the same model on the same data.
use crate::error::{Error, Result};
use std::ffi::{CStr, CString};
use std::ptr;
use xgboost_rs_sys as sys;

/// XGBoost's message for the last failed call on this thread.
fn last_error() -> String {
    // SAFETY: XGBGetLastError returns a thread-local, NUL-terminated string that stays valid
    // until the next XGBoost call on this thread; we copy it at once.
    unsafe {
        let p = sys::XGBGetLastError();
        if p.is_null() {
            return "unknown XGBoost error".into();
        }
        CStr::from_ptr(p).to_string_lossy().lines().next().unwrap_or("").trim().to_string()
    }
}

fn check(ret: i32, what: &str) -> Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(Error::Xgboost(format!("{what} failed: {}", last_error())))
    }
}

/// Version of the linked XGBoost library, e.g. (1, 6, 2).
pub fn version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: writes three ints.
    unsafe { sys::XGBoostVersion(&mut a, &mut b, &mut c) };
    (a, b, c)
}

/// A dense feature matrix (row-major f32, NaN = missing) with optional labels.
pub struct DMatrix {
    handle: sys::DMatrixHandle,
    rows: usize,
}

// SAFETY: a DMatrix handle may move between threads; we never share one between threads at once.
unsafe impl Send for DMatrix {}

impl DMatrix {
    pub fn dense(data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if rows * cols != data.len() {
            return Err(Error::Xgboost(format!("matrix: {} values for {rows} × {cols}", data.len())));
        }
        let mut handle = ptr::null_mut();
        // SAFETY: `data` holds rows × cols floats; XGBoost copies them.
        check(unsafe { sys::XGDMatrixCreateFromMat(data.as_ptr(), rows as u64, cols as u64, f32::NAN, &mut handle) }, "creating a matrix")?;
        Ok(Self { handle, rows })
    }

    pub fn set_labels(&mut self, labels: &[f32]) -> Result<()> {
        if labels.len() != self.rows {
            return Err(Error::Xgboost(format!("{} labels for {} rows", labels.len(), self.rows)));
        }
        let key = CString::new("label").expect("static");
        // SAFETY: copies `labels.len()` floats.
        check(
            unsafe { sys::XGDMatrixSetFloatInfo(self.handle, key.as_ptr(), labels.as_ptr(), labels.len() as u64) },
            "setting labels",
        )
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Drop for DMatrix {
    fn drop(&mut self) {
        // SAFETY: the handle came from XGDMatrixCreateFromMat and is freed once.
        unsafe { sys::XGDMatrixFree(self.handle) };
    }
}

/// A gradient-boosted model.
pub struct Booster {
    handle: sys::BoosterHandle,
}

// SAFETY: as for DMatrix.
unsafe impl Send for Booster {}

impl Booster {
    /// A new booster caching `train` (like `xgboost.train` does) with the given parameters,
    /// set in order.
    pub fn new(train: &DMatrix, params: &[(String, String)]) -> Result<Self> {
        let mut handle = ptr::null_mut();
        let cache = [train.handle];
        // SAFETY: one valid DMatrix handle; the booster keeps its own reference.
        check(unsafe { sys::XGBoosterCreate(cache.as_ptr(), 1, &mut handle) }, "creating a booster")?;
        let mut booster = Self { handle };
        for (k, v) in params {
            booster.set_param(k, v)?;
        }
        Ok(booster)
    }

    pub fn set_param(&mut self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (CString::new(name), CString::new(value));
        let (Ok(n), Ok(v)) = (n, v) else { return Err(Error::param(format!("xgb.params.{name}"), "contains a NUL byte")) };
        // SAFETY: NUL-terminated strings, copied by XGBoost.
        check(unsafe { sys::XGBoosterSetParam(self.handle, n.as_ptr(), v.as_ptr()) }, &format!("parameter {name}={value}"))
    }

    /// One boosting round on `train` (`iteration` counts from 0).
    pub fn update(&mut self, train: &DMatrix, iteration: i32) -> Result<()> {
        // SAFETY: valid handles.
        check(unsafe { sys::XGBoosterUpdateOneIter(self.handle, iteration, train.handle) }, "a boosting round")
    }

    /// Predictions (one per row; single-output models).
    pub fn predict(&self, data: &DMatrix) -> Result<Vec<f32>> {
        let mut len = 0u64;
        let mut out: *const f32 = ptr::null();
        // SAFETY: XGBoost owns `out` (valid until the next call on this booster); copied at once.
        check(unsafe { sys::XGBoosterPredict(self.handle, data.handle, 0, 0, 0, &mut len, &mut out) }, "prediction")?;
        if out.is_null() || len as usize != data.rows {
            return Err(Error::Xgboost(format!("{len} predictions for {} rows", data.rows)));
        }
        Ok(unsafe { std::slice::from_raw_parts(out, len as usize) }.to_vec())
    }

    /// The model as XGBoost's JSON (for inspection and tests).
    pub fn to_json(&self) -> Result<String> {
        let config = CString::new(r#"{"format": "json"}"#).expect("static");
        let mut len = 0u64;
        let mut out: *const std::os::raw::c_char = ptr::null();
        // SAFETY: buffer owned by the booster, copied at once.
        check(unsafe { sys::XGBoosterSaveModelToBuffer(self.handle, config.as_ptr(), &mut len, &mut out) }, "saving the model")?;
        let bytes = unsafe { std::slice::from_raw_parts(out as *const u8, len as usize) };
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle came from XGBoosterCreate and is freed once.
        unsafe { sys::XGBoosterFree(self.handle) };
    }
}

/// Trains `rounds` rounds on (x, y) and predicts `x_new` — what `xgboost.train(params,
/// DMatrix(x, label=y), rounds).predict(DMatrix(x_new))` does in Python.
pub fn fit_predict(x: &[f32], y: &[f32], cols: usize, x_new: &[f32], params: &[(String, String)], rounds: usize) -> Result<Vec<f32>> {
    let mut train = DMatrix::dense(x, y.len(), cols)?;
    train.set_labels(y)?;
    let mut booster = Booster::new(&train, params)?;
    for i in 0..rounds {
        // XGBoost checks parameters when the first round configures the booster: name them.
        booster.update(&train, i as i32).map_err(|e| match (i, e) {
            (0, Error::Xgboost(m)) => {
                let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Error::Xgboost(format!("{m} (parameters {})", list.join(" ")))
            }
            (_, e) => e,
        })?;
    }
    #[allow(clippy::manual_checked_ops)]
    let new = DMatrix::dense(x_new, if cols == 0 { 0 } else { x_new.len() / cols }, cols)?;
    booster.predict(&new)
}
