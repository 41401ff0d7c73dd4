//! Loading guest kernels into guest memory.
