//! CIFAR-10 training augmentation as the published code does it (torchvision transforms).

use crate::rng::Rng;

/// torchvision's RandomCrop(32, padding=4) → RandomHorizontalFlip → RandomRotation(15), on bytes,
/// zero fill, nearest-neighbour rotation (torchvision's default interpolation).
pub(super) fn augment_image(src: &[u8], shape: &[usize], r: &mut Rng, out: &mut [u8]) {
    let (c, h, w) = (shape[0], shape[1] as i64, shape[2] as i64);
    let dy = r.below(9) as i64 - 4;
    let dx = r.below(9) as i64 - 4;
    let flip = r.below(2) == 1;
    let angle = (r.uniform() * 30.0 - 15.0).to_radians();
    let (sin, cos) = angle.sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    for y in 0..h {
        for x in 0..w {
            // Inverse-map the output pixel through rotation, flip and crop offset.
            let (fy, fx) = (y as f64 - cy, x as f64 - cx);
            let ry = (cos * fy - sin * fx + cy).round() as i64;
            let rx = (sin * fy + cos * fx + cx).round() as i64;
            let rx = if flip { w - 1 - rx } else { rx };
            let (sy, sx) = (ry + dy, rx + dx);
            for ch in 0..c {
                let o = ch * (h * w) as usize + (y * w + x) as usize;
                out[o] = if (0..h).contains(&ry) && (0..w).contains(&rx) && (0..h).contains(&sy) && (0..w).contains(&sx)
                {
                    src[ch * (h * w) as usize + (sy * w + sx) as usize]
                } else {
                    0
                };
            }
        }
    }
}
