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
        lr_tensor: *mut CTensor,
        release_grads: i32,
    ) -> *mut c_char;
    fn dp_grads_to_none(params: *mut *mut CTensor, n: usize) -> *mut c_char;
    fn dp_cuda_graphs_built() -> i32;
    fn dp_cuda_use_side_stream(device: i32) -> *mut c_char;
    fn dp_graph_begin(out: *mut *mut c_void) -> *mut c_char;
    fn dp_graph_end(g: *mut c_void) -> *mut c_char;
    fn dp_graph_replay(g: *mut c_void) -> *mut c_char;
    fn dp_graph_free(g: *mut c_void);
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

/// The learning rate of a fused SGD step.
pub enum Lr<'a> {
    Value(f64),
    /// A one-element float32 tensor on the parameters' device, read when the step runs (a
    /// captured CUDA graph then follows the schedule without a new capture).
    Tensor(&'a mut Tensor),
}

/// One fused SGD step over `params` (those with a gradient) and their momentum buffers, then
/// with `release_grads` the gradients are released. See csrc/shim.cpp.
pub fn fused_sgd<'a>(
    params: impl Iterator<Item = &'a mut Tensor>,
    bufs: impl Iterator<Item = &'a mut Tensor>,
    weight_decay: f64,
    momentum: f64,
    lr: Lr,
    release_grads: bool,
) -> anyhow::Result<()> {
    let (mut p, mut b) = (ptrs(params), ptrs(bufs));
    assert_eq!(p.len(), b.len(), "one momentum buffer per parameter");
    let (value, tensor) = match lr {
        Lr::Value(v) => (v, std::ptr::null_mut()),
        Lr::Tensor(t) => (0.0, t.as_mut_ptr() as *mut CTensor),
    };
    // SAFETY: every pointer is a live tch tensor borrowed mutably for the call (or null).
    check(unsafe {
        dp_fused_sgd(
            p.as_mut_ptr(),
            b.as_mut_ptr(),
            p.len(),
            weight_decay,
            momentum,
            value,
            tensor,
            release_grads as i32,
        )
    })
}

/// Release the gradients of `params` (zero_grad with set_to_none).
pub fn grads_to_none<'a>(params: impl Iterator<Item = &'a mut Tensor>) -> anyhow::Result<()> {
    let mut p = ptrs(params);
    // SAFETY: as above.
    check(unsafe { dp_grads_to_none(p.as_mut_ptr(), p.len()) })
}

/// Whether this build can capture CUDA graphs (CUDA's headers were found when it was built).
pub fn cuda_graphs_built() -> bool {
    // SAFETY: returns a constant.
    unsafe { dp_cuda_graphs_built() != 0 }
}

/// Make a fresh non-default stream of CUDA device `index` this thread's current one, once the
/// device is idle: graphs are captured on such a stream, and the steps before must run on it.
pub fn cuda_use_side_stream(index: usize) -> anyhow::Result<()> {
    // SAFETY: plain arguments; errors come back as a message.
    check(unsafe { dp_cuda_use_side_stream(index as i32) })
}

/// A CUDA graph (ATen's CUDAGraph) being captured from the current stream, then replayed.
pub struct CudaGraph(*mut c_void);

impl CudaGraph {
    /// Start capturing the current (non-default) stream: the kernels that follow are recorded,
    /// not run, until `end`.
    pub fn begin() -> anyhow::Result<CudaGraph> {
        let mut g = std::ptr::null_mut();
        // SAFETY: out points to a live pointer; on success it holds a graph freed in Drop.
        check(unsafe { dp_graph_begin(&mut g) })?;
        Ok(CudaGraph(g))
    }

    /// End the capture and instantiate the graph (also after a failed capture, to stop it).
    pub fn end(&mut self) -> anyhow::Result<()> {
        // SAFETY: self.0 is a live graph.
        check(unsafe { dp_graph_end(self.0) })
    }

    /// Run the captured kernels on the current stream.
    pub fn replay(&self) -> anyhow::Result<()> {
        // SAFETY: as above.
        check(unsafe { dp_graph_replay(self.0) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: freed once, here.
        unsafe { dp_graph_free(self.0) }
    }
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
