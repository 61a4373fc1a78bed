//! CIFAR-10 training augmentation as the published code does it (torchvision transforms). The
//! host applies it here; the engine applies the same drawn transforms on the device
//! (engine/device_data.rs), so this file is the one definition of what an augmentation is.

use crate::rng::Rng;

/// One image's random transform: torchvision's RandomCrop(32, padding=4) →
/// RandomHorizontalFlip → RandomRotation(15), zero fill, nearest-neighbour rotation
/// (torchvision's default interpolation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    /// Crop offset in rows and columns, −4..=4.
    pub dy: i64,
    pub dx: i64,
    pub flip: bool,
    /// Sine and cosine of the rotation angle (within ±15°).
    pub sin: f64,
    pub cos: f64,
}

impl Transform {
    /// The transform that leaves an image as it is.
    pub const IDENTITY: Transform = Transform { dy: 0, dx: 0, flip: false, sin: 0.0, cos: 1.0 };

    /// The next transform of generator `r`: four draws, in this order.
    pub fn draw(r: &mut Rng) -> Transform {
        let dy = r.below(9) as i64 - 4;
        let dx = r.below(9) as i64 - 4;
        let flip = r.below(2) == 1;
        let (sin, cos) = (r.uniform() * 30.0 - 15.0).to_radians().sin_cos();
        Transform { dy, dx, flip, sin, cos }
    }

    /// The source pixel of output pixel (y, x) in an h × w image, None where it is zero-filled.
    /// The device computes the same expression in the same order (engine/device_data.rs).
    pub fn source(&self, y: i64, x: i64, h: i64, w: i64) -> Option<(i64, i64)> {
        // Inverse-map the output pixel through rotation, flip and crop offset.
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        let (fy, fx) = (y as f64 - cy, x as f64 - cx);
        let ry = (self.cos * fy - self.sin * fx + cy).round() as i64;
        let rx = (self.sin * fy + self.cos * fx + cx).round() as i64;
        let rx = if self.flip { w - 1 - rx } else { rx };
        let (sy, sx) = (ry + self.dy, rx + self.dx);
        let inside = |v: i64, n: i64| (0..n).contains(&v);
        (inside(ry, h) && inside(rx, w) && inside(sy, h) && inside(sx, w)).then_some((sy, sx))
    }
}

/// Image `src` ([C, H, W] bytes) under the next transform of `r`, into `out`.
pub(super) fn augment_image(src: &[u8], shape: &[usize], r: &mut Rng, out: &mut [u8]) {
    let (c, h, w) = (shape[0], shape[1] as i64, shape[2] as i64);
    let t = Transform::draw(r);
    let plane = (h * w) as usize;
    for y in 0..h {
        for x in 0..w {
            let o = (y * w + x) as usize;
            let s = t.source(y, x, h, w).map(|(sy, sx)| (sy * w + sx) as usize);
            for ch in 0..c {
                out[ch * plane + o] = s.map_or(0, |s| src[ch * plane + s]);
            }
        }
    }
}
