// ATen entry points that tch does not wrap (its generator skips ops taking tensor lists and
// returning nothing). Compiled by build.rs against the same LibTorch headers tch links.
// Tensors arrive as tch's C_tensor pointers, which are at::Tensor*. Errors come back as a
// malloc'd message (free with dp_free_error), never as a C++ exception across the FFI.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <cstdlib>
#include <cstring>
#include <vector>

static char *dp_error(const char *what) { return strdup(what); }

extern "C" {

void dp_free_error(char *e) { free(e); }

// SGD with momentum and weight decay for every parameter that has a gradient, as one fused
// multi-tensor kernel (at::_fused_sgd_, PyTorch's fused=True SGD): d = g + wd·p,
// buf = momentum·buf + d, p -= lr·buf. Momentum buffers start at zero, so is_first_step is
// not needed (buf = d on the first step). With release_grads the gradients are then released
// (set_to_none), so the next backward writes fresh ones instead of accumulating.
char *dp_fused_sgd(at::Tensor **params, at::Tensor **bufs, size_t n, double weight_decay, double momentum,
                   double lr, int release_grads) {
    try {
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
        if (!ps.empty())
            at::_fused_sgd_(ps, gs, bs, weight_decay, momentum, lr, 0.0, false, false, false);
        if (release_grads)
            for (size_t i = 0; i < n; i++) params[i]->mutable_grad().reset();
        return nullptr;
    } catch (const std::exception &e) {
        return dp_error(e.what());
    }
}

// Release every gradient (PyTorch's zero_grad(set_to_none=True)): no kernel per parameter.
char *dp_grads_to_none(at::Tensor **params, size_t n) {
    try {
        for (size_t i = 0; i < n; i++) params[i]->mutable_grad().reset();
        return nullptr;
    } catch (const std::exception &e) {
        return dp_error(e.what());
    }
}

// TF32 in cuBLAS matrix products and cuDNN convolutions (process-wide, as in PyTorch).
char *dp_set_tf32(int matmul, int cudnn) {
    try {
        at::globalContext().setAllowTF32CuBLAS(matmul != 0);
        at::globalContext().setAllowTF32CuDNN(cudnn != 0);
        return nullptr;
    } catch (const std::exception &e) {
        return dp_error(e.what());
    }
}

// Enter (enter != 0) or leave autocast to bfloat16 on the CPU (cuda == 0) or CUDA, as
// torch.autocast's __enter__ / __exit__ do: leaving restores `was` and, at the outermost level,
// clears the cache of weights cast to bfloat16 (they change at every step). *was_out gets the
// state before entering.
char *dp_autocast_bf16(int cuda, int enter, int was, int *was_out) {
    try {
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
        return nullptr;
    } catch (const std::exception &e) {
        return dp_error(e.what());
    }
}
}
