//! The model parameters: merging the `train` section, checks that name their key, and the
//! write-up's defaults (the link following the scale unless set).
use perturbgen_models::config::{ModelKind, ModelParams};
use perturbgen_models::nb_loss::{Dispersion, Link};

#[test]
fn model_params_merge_and_check_name_the_key() {
    use perturbgen::params::ParamGuard;
    use perturbgen_models::config::TrainSection;
    let section = TrainSection {
        common: ModelParams { latent_dim: Some(7), max_epochs: Some(40), min_epochs: Some(20), ..Default::default() },
        dgd: ModelParams { latent_dim: Some(9), decoder_betas: Some([0.6, 0.8]), ..Default::default() },
        ..Default::default()
    };
    let plan = section.clone().check().unwrap();
    // The model's own key wins over common's; common's over the write-up default.
    assert_eq!((plan.config(ModelKind::Dgd).latent_dim, plan.config(ModelKind::Nbvae).latent_dim), (9, 7));
    assert_eq!(plan.config(ModelKind::Nbvae).max_epochs, 40);
    assert_eq!((plan.config(ModelKind::Dgd).decoder_adam.beta1, plan.config(ModelKind::Dgd).decoder_adam.beta2), (0.6, 0.8));
    assert_eq!(plan.config(ModelKind::Nbvae).decoder_adam.lr, 1e-3, "the VAE keeps its own default");
    let key_of = |p: ModelParams| match p.check(ModelKind::Dgd) {
        Err(perturbgen::Error::Param { key, .. }) => key,
        other => panic!("expected a parameter error, got {other:?}"),
    };
    assert_eq!(key_of(ModelParams { min_epochs: Some(300), ..Default::default() }), "train.min_epochs");
    assert_eq!(key_of(ModelParams { dirichlet_alpha: Some(0.0), ..Default::default() }), "train.dirichlet_alpha");
    assert_eq!(key_of(ModelParams { softball_sharpness: Some(f64::NAN), ..Default::default() }), "train.softball_sharpness");
    assert_eq!(key_of(ModelParams { latent_betas: Some([1.0, 0.5]), ..Default::default() }), "train.latent_betas");
    assert_eq!(key_of(ModelParams { dispersion: Some(Dispersion::ExpPlusOne), dispersion_init: Some(0.5), ..Default::default() }), "train.dispersion_init");
}

#[test]
fn link_follows_scale_unless_set_and_defaults_are_the_write_ups() {
    use perturbgen_models::config::{EncoderInput, MixturePriorWeight};
    use perturbgen_models::data::Scale;
    let check = |p: ModelParams| p.check(ModelKind::Dgd).unwrap();
    let d = check(ModelParams::default());
    assert_eq!((d.scale, d.link, d.dispersion, d.mixture_prior_weight), (Scale::Max, Link::Sigmoid, Dispersion::Exp, MixturePriorWeight::PerCell));
    assert_eq!(ModelParams::default().check(ModelKind::Nbvae).unwrap().encoder_input, EncoderInput::Counts);
    for scale in [Scale::Sum, Scale::Mean] {
        assert_eq!(check(ModelParams { scale: Some(scale), ..Default::default() }).link, Link::Softplus);
    }
    assert_eq!(check(ModelParams { scale: Some(Scale::Sum), link: Some(Link::Sigmoid), ..Default::default() }).link, Link::Sigmoid);
    assert_eq!(check(ModelParams { link: Some(Link::Softplus), ..Default::default() }).link, Link::Softplus);
}
