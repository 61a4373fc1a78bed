// ATen entry points that tch does not wrap (its generator skips ops taking tensor lists and
// returning nothing). Compiled by build.rs against the same LibTorch headers tch links.
// Tensors arrive as tch's C_tensor pointers, which are at::Tensor*. Errors come back as a
// malloc'd message (free with dp_free_error), never as a C++ exception across the FFI.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>
#ifdef DP_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

static char *dp_error(const char *what) { return strdup(what); }

// Run f; an exception comes back as a malloc'd message, never across the FFI.
template <class F> static char *guarded(F f) {
    try {
        f();
        return nullptr;
    } catch (const std::exception &e) {
        return dp_error(e.what());
    }
}

extern "C" {

void dp_free_error(char *e) { free(e); }

// SGD with momentum and weight decay for every parameter that has a gradient, as one fused
// multi-tensor kernel (at::_fused_sgd_, PyTorch's fused=True SGD): d = g + wd·p,
// buf = momentum·buf + d, p -= lr·buf. Momentum buffers start at zero, so is_first_step is
// not needed (buf = d on the first step). The rate is `lr`, or with lr_tensor non-null the
// one-element float32 tensor it points to, on the parameters' device (the tensor_lr overload:
// a captured CUDA graph then picks up a new rate without being captured again). With
// release_grads the gradients are then released (set_to_none), so the next backward writes
// fresh ones instead of accumulating.
char *dp_fused_sgd(at::Tensor **params, at::Tensor **bufs, size_t n, double weight_decay, double momentum,
                   double lr, at::Tensor *lr_tensor, int release_grads) {
    return guarded([&] {
        c10::NoGradGuard no_grad;
        std::vector<at::Tensor> ps, gs, bs;
        ps.reserve(n), gs.reserve(n), bs.reserve(n);
        for (size_t i = 0; i < n; i++) {
            const at::Tensor &g = params[i]->grad();
            if (!g.defined()) continue;
            ps.push_back(*params[i]);
            gs.push_back(g);
            bs.push_back(*bufs[i]);
        }
        if (!ps.empty()) {
            if (lr_tensor)
                at::_fused_sgd_(ps, gs, bs, weight_decay, momentum, *lr_tensor, 0.0, false, false, false);
            else
                at::_fused_sgd_(ps, gs, bs, weight_decay, momentum, lr, 0.0, false, false, false);
        }
        if (release_grads)
            for (size_t i = 0; i < n; i++) params[i]->mutable_grad().reset();
    });
}

// CUDA graphs (ATen's CUDAGraph, as torch.cuda.graph uses it). Compiled only where build.rs
// found CUDA's headers; otherwise every call says so.
#ifdef DP_CUDA_GRAPHS
int dp_cuda_graphs_built() { return 1; }

// Make `device` this thread's current device (a capture records the current device's current
// stream) and a fresh non-default stream of it the current stream (capture needs a non-default
// stream, and warm-up steps must run on the stream that is captured), once the device is idle.
// Only c10_cuda's own functions: the inline CUDA guards would link the CUDA runtime directly.
char *dp_cuda_use_side_stream(int device) {
    return guarded([&] {
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
        c10::cuda::device_synchronize();
        c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
    });
}

// Start capturing the current stream into a new graph (its own memory pool), once the device
// is idle (as torch.cuda.graph does).
char *dp_graph_begin(void **out) {
    return guarded([&] {
        c10::cuda::device_synchronize();
        auto g = std::make_unique<at::cuda::CUDAGraph>();
        g->capture_begin();
        *out = g.release();
    });
}

// End the capture and instantiate the graph. On failure the graph is unusable (free it).
char *dp_graph_end(void *g) {
    return guarded([&] { static_cast<at::cuda::CUDAGraph *>(g)->capture_end(); });
}

char *dp_graph_replay(void *g) {
    return guarded([&] { static_cast<at::cuda::CUDAGraph *>(g)->replay(); });
}

void dp_graph_free(void *g) { delete static_cast<at::cuda::CUDAGraph *>(g); }
#else
static const char *no_graphs = "this build has no CUDA graph support (CUDA's headers were not found at build time)";
int dp_cuda_graphs_built() { return 0; }
char *dp_cuda_use_side_stream(int) { return dp_error(no_graphs); }
char *dp_graph_begin(void **) { return dp_error(no_graphs); }
char *dp_graph_end(void *) { return dp_error(no_graphs); }
char *dp_graph_replay(void *) { return dp_error(no_graphs); }
void dp_graph_free(void *) {}
#endif

// Release every gradient (PyTorch's zero_grad(set_to_none=True)): no kernel per parameter.
char *dp_grads_to_none(at::Tensor **params, size_t n) {
    return guarded([&] {
        for (size_t i = 0; i < n; i++) params[i]->mutable_grad().reset();
    });
}

// TF32 in cuBLAS matrix products and cuDNN convolutions (process-wide, as in PyTorch).
char *dp_set_tf32(int matmul, int cudnn) {
    return guarded([&] {
        at::globalContext().setAllowTF32CuBLAS(matmul != 0);
        at::globalContext().setAllowTF32CuDNN(cudnn != 0);
    });
}

// Enter (enter != 0) or leave autocast to bfloat16 on the CPU (cuda == 0) or CUDA, as
// torch.autocast's __enter__ / __exit__ do: leaving restores `was` and, at the outermost level,
// clears the cache of weights cast to bfloat16 (they change at every step). *was_out gets the
// state before entering.
char *dp_autocast_bf16(int cuda, int enter, int was, int *was_out) {
    return guarded([&] {
        at::DeviceType dt = cuda ? at::kCUDA : at::kCPU;
        if (enter) {
            *was_out = at::autocast::is_autocast_enabled(dt) ? 1 : 0;
            at::autocast::set_autocast_dtype(dt, at::kBFloat16);
            at::autocast::set_autocast_enabled(dt, true);
            at::autocast::increment_nesting();
        } else {
            at::autocast::set_autocast_enabled(dt, was != 0);
            if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        }
    });
}
}
