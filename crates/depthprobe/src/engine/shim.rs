//! Safe wrappers over csrc/shim.cpp: ATen ops that tch does not expose.

use std::ffi::{c_char, c_void, CStr};

use tch::Tensor;

/// tch's C_tensor, which is an at::Tensor*.
type CTensor = c_void;

extern "C" {
    fn dp_fused_sgd(
        params: *mut *mut CTensor,
        bufs: *mut *mut CTensor,
        n: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        release_grads: i32,
    ) -> *mut c_char;
    fn dp_grads_to_none(params: *mut *mut CTensor, n: usize) -> *mut c_char;
    fn dp_set_tf32(matmul: i32, cudnn: i32) -> *mut c_char;
    fn dp_autocast_bf16(cuda: i32, enter: i32, was: i32, was_out: *mut i32) -> *mut c_char;
    fn dp_free_error(e: *mut c_char);
}

fn check(e: *mut c_char) -> anyhow::Result<()> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from strdup, freed once here.
    let msg = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    unsafe { dp_free_error(e) };
    anyhow::bail!("LibTorch: {msg}")
}

fn ptrs<'a>(ts: impl Iterator<Item = &'a mut Tensor>) -> Vec<*mut CTensor> {
    ts.map(|t| t.as_mut_ptr() as *mut CTensor).collect()
}

/// One fused SGD step over `params` (those with a gradient) and their momentum buffers, then
/// with `release_grads` the gradients are released. See csrc/shim.cpp.
pub fn fused_sgd<'a>(
    params: impl Iterator<Item = &'a mut Tensor>,
    bufs: impl Iterator<Item = &'a mut Tensor>,
    weight_decay: f64,
    momentum: f64,
    lr: f64,
    release_grads: bool,
) -> anyhow::Result<()> {
    let (mut p, mut b) = (ptrs(params), ptrs(bufs));
    assert_eq!(p.len(), b.len(), "one momentum buffer per parameter");
    // SAFETY: every pointer is a live tch tensor borrowed mutably for the call.
    check(unsafe {
        dp_fused_sgd(p.as_mut_ptr(), b.as_mut_ptr(), p.len(), weight_decay, momentum, lr, release_grads as i32)
    })
}

/// Release the gradients of `params` (zero_grad with set_to_none).
pub fn grads_to_none<'a>(params: impl Iterator<Item = &'a mut Tensor>) -> anyhow::Result<()> {
    let mut p = ptrs(params);
    // SAFETY: as above.
    check(unsafe { dp_grads_to_none(p.as_mut_ptr(), p.len()) })
}

/// Allow TF32 in a GPU's matrix products and in its convolutions (process-wide).
pub fn set_tf32(matmul: bool, cudnn: bool) -> anyhow::Result<()> {
    // SAFETY: plain flags; errors come back as a message.
    check(unsafe { dp_set_tf32(matmul as i32, cudnn as i32) })
}

/// Autocast to bfloat16 on the CPU or on CUDA while this guard lives (torch.autocast).
pub struct AutocastBf16 {
    cuda: bool,
    was: i32,
}

impl AutocastBf16 {
    pub fn enter(cuda: bool) -> AutocastBf16 {
        let mut was = 0;
        // SAFETY: was_out points to a live i32.
        check(unsafe { dp_autocast_bf16(cuda as i32, 1, 0, &mut was) }).expect("autocast cannot fail to start");
        AutocastBf16 { cuda, was }
    }
}

impl Drop for AutocastBf16 {
    fn drop(&mut self) {
        let mut unused = 0;
        // SAFETY: as above.
        let r = check(unsafe { dp_autocast_bf16(self.cuda as i32, 0, self.was, &mut unused) });
        r.expect("autocast cannot fail to end");
    }
}
