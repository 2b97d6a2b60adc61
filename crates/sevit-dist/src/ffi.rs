//! Raw bindings of `cpp/c10d_bridge.cpp` (in `sevit-torch-ext`). Use [`super::ProcessGroup`]
//! instead.

pub use sevit_torch_ext::c10d::*;
