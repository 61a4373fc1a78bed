//! Learning-rate schedule (docs/method.md, "Training protocol"): warm-up over the first epochs
//! (linear per iteration, or the published code's rate 0), then MultiStepLR (×γ at each
//! milestone epoch).

use depthprobe_config::{TrainConfig, Warmup};

/// LR for iteration `iter` (0-based) of `epoch` (1-based) with `iters` iterations per epoch.
/// Linear warm-up ramps to the base LR, reaching it on the last warm-up iteration (a stepped
/// linear scheduler starts at 0 and wastes one step; we start at base/(warm·iters)). The published
/// warm-up is rate 0 throughout: that code builds its scheduler and never steps it.
pub fn lr_at(t: &TrainConfig, epoch: usize, iter: usize, iters: usize) -> f64 {
    if epoch <= t.warmup_epochs {
        if t.warmup == Warmup::Published {
            return 0.0;
        }
        let done = (epoch - 1) * iters + iter + 1;
        return t.lr * done as f64 / (t.warmup_epochs * iters) as f64;
    }
    let drops = t.milestones.iter().filter(|&&m| epoch >= m).count();
    t.lr * t.gamma.powi(drops as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_values_per_epoch() {
        let t = TrainConfig::default();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        // Epoch 1: linear warm-up over its 100 iterations.
        assert!(close(lr_at(&t, 1, 0, 100), 0.001));
        assert!(close(lr_at(&t, 1, 49, 100), 0.05));
        assert!(close(lr_at(&t, 1, 99, 100), 0.1));
        // The closed form: 0.1 to epoch 59, then 0.02, 0.004 and from epoch 200 on 0.0008.
        for (epoch, want) in
            [(2, 0.1), (59, 0.1), (60, 0.02), (99, 0.02), (100, 0.004), (199, 0.004), (200, 0.0008), (500, 0.0008)]
        {
            assert!(close(lr_at(&t, epoch, 0, 100), want), "epoch {epoch}: {} vs {want}", lr_at(&t, epoch, 0, 100));
            assert!(close(lr_at(&t, epoch, 99, 100), want));
        }
    }

    #[test]
    fn the_published_warmup_is_rate_zero_then_the_base_rate() {
        let t = TrainConfig { warmup: Warmup::Published, warmup_epochs: 2, ..TrainConfig::default() };
        for (epoch, iter) in [(1, 0), (1, 99), (2, 50), (2, 99)] {
            assert_eq!(lr_at(&t, epoch, iter, 100), 0.0);
        }
        assert_eq!(lr_at(&t, 3, 0, 100), 0.1);
        assert!((lr_at(&t, 60, 0, 100) - 0.02).abs() < 1e-15);
    }

    #[test]
    fn no_warmup_starts_at_base() {
        let t = TrainConfig { warmup_epochs: 0, milestones: vec![2], gamma: 0.5, ..TrainConfig::default() };
        assert_eq!(lr_at(&t, 1, 0, 10), 0.1);
        assert_eq!(lr_at(&t, 2, 0, 10), 0.05);
    }
}
