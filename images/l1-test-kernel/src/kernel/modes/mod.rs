//! What the command line can ask for besides the checks.

pub mod bench;
pub mod crash;
pub mod hostile;
pub mod work;
