//! One file per architecture; [`super::network::build`] is the registry.

pub mod conv;
pub mod mlp;
pub mod resnet;
mod top;
pub mod vgg;
