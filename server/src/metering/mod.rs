//! The metering pipeline's pure steps: message validation and the peak rule. The broker loop,
//! storage and notification build on these (issue "Metering pipeline").

pub mod message;
pub mod peak;
