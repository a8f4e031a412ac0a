//! Gradients our ops hand to the training step directly instead of returning them to candle's
//! autograd. candle's backward pass adds every returned gradient into a freshly zeroed tensor of
//! its argument's size (`GradStore::or_insert`, then an addition): for the big layers' weights
//! (18,211 × 1,024 at Kaggle size, 75 MB) and the NB likelihood's [B, G] logits that is a memset
//! and an addition over 75 MB each, ~13–15 ms a step apiece. An op that knows its gradient is
//! the only one its variable gets pushes it here; the training loop moves it into the store after
//! the backward pass ([`HandedGrads::move_into`]), before the optimiser step.
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use std::sync::{Arc, Mutex};

/// A shared list of (variable, gradient) pairs filled by backward passes; cloning shares it.
#[derive(Debug, Default, Clone)]
pub struct HandedGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl HandedGrads {
    /// Records `grad` as (a part of) the gradient of `var` (keyed by the tensor's id, so `var`
    /// must be the variable's own tensor or a clone of it, not a copy).
    pub fn push(&self, var: &Tensor, grad: Tensor) -> candle_core::Result<()> {
        self.0.lock().map_err(|_| poisoned())?.push((var.clone(), grad));
        Ok(())
    }

    /// Moves every recorded gradient into `grads`, added to any gradient autograd already has
    /// for the same variable; the number moved (0 if no backward pass ran since the last call).
    pub fn move_into(&self, grads: &mut GradStore) -> candle_core::Result<usize> {
        let handed = std::mem::take(&mut *self.0.lock().map_err(|_| poisoned())?);
        let n = handed.len();
        for (var, grad) in handed {
            let total = match grads.remove(&var) {
                Some(g) => (g + grad)?,
                None => grad,
            };
            grads.insert(&var, total);
        }
        Ok(n)
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("handed gradients: lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn moved_gradients_add_to_autograds_and_empty_the_list() {
        let (a, b) = (Var::new(&[1f32, 2.0], &Device::Cpu).unwrap(), Var::new(&[3f32], &Device::Cpu).unwrap());
        // d/da of Σ a² = 2a from autograd; 10 and 20 handed over for a, 5 for b.
        let mut grads = a.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let handed = HandedGrads::default();
        handed.push(a.as_tensor(), Tensor::new(&[10f32, 20.0], &Device::Cpu).unwrap()).unwrap();
        handed.clone().push(b.as_tensor(), Tensor::new(&[5f32], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(handed.move_into(&mut grads).unwrap(), 2);
        assert_eq!(grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![12.0, 24.0]);
        assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![5.0]);
        assert_eq!(handed.move_into(&mut grads).unwrap(), 0, "moving empties the list");
    }
}
