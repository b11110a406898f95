//! Preprocessing profiles (how pixels become the network's input tensor) and
//! bounded image decoding.

use crate::error::{Error, Result};
use crate::model::network::{Layout, Network};
use image::{ImageDecoder, ImageReader, Limits, RgbImage, imageops::FilterType};
use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

impl ChannelOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        }
    }
}

/// value = (pixel * scale - mean[c]) / std[c], pixel in 0..=255, c in the
/// model's channel order.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub input_size: usize,
    pub layout: Layout,
    pub channel_order: ChannelOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Named profiles selectable from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileName {
    Caffe,
    Torchvision,
}

impl crate::choice::Choice for ProfileName {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            ProfileName::Caffe,
            "caffe",
            "Keras/Caffe ImageNet weights: BGR, 0..255, minus the BGR mean",
        ),
        (
            ProfileName::Torchvision,
            "torchvision",
            "torchvision / ONNX model zoo: RGB, 0..1, ImageNet mean and std",
        ),
    ];
}

impl Profile {
    pub fn named(name: ProfileName, input_size: usize, layout: Layout) -> Profile {
        match name {
            ProfileName::Caffe => Profile {
                name: "caffe".into(),
                input_size,
                layout,
                channel_order: ChannelOrder::Bgr,
                scale: 1.0,
                mean: [103.939, 116.779, 123.68],
                std: [1.0, 1.0, 1.0],
            },
            ProfileName::Torchvision => Profile {
                name: "torchvision".into(),
                input_size,
                layout,
                channel_order: ChannelOrder::Rgb,
                scale: 1.0 / 255.0,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
            },
        }
    }

    /// The right default for a model file: Keras exports (tf2onnx, NHWC)
    /// carry Caffe-style weights, NCHW zoo and torchvision exports expect
    /// torchvision normalisation.
    pub fn default_for(net: &Network, input_size: usize) -> Profile {
        let keras = net.producer.contains("tf2onnx")
            || net.producer.contains("keras")
            || net.layout == Layout::Nhwc;
        let name = if keras {
            ProfileName::Caffe
        } else {
            ProfileName::Torchvision
        };
        Profile::named(name, input_size, net.layout)
    }

    /// A stable text form, part of every recording's key.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{:?}|{:?}|{:?}",
            self.input_size,
            self.layout.as_str(),
            self.channel_order.as_str(),
            self.scale,
            self.mean,
            self.std,
            self.name
        )
    }

    /// Resizes and normalises an image into a `[3, H, W]` tensor (channels in
    /// the model's order).
    pub fn preprocess(&self, img: &RgbImage) -> (RgbImage, Vec<f32>) {
        let s = self.input_size as u32;
        let resized = if img.width() == s && img.height() == s {
            img.clone()
        } else {
            resize_rgb(img, s)
        };
        let plane = (s * s) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, p) in resized.pixels().enumerate() {
            for c in 0..3 {
                let src = match self.channel_order {
                    ChannelOrder::Rgb => c,
                    ChannelOrder::Bgr => 2 - c,
                };
                out[c * plane + i] = (p[src] as f32 * self.scale - self.mean[c]) / self.std[c];
            }
        }
        (resized, out)
    }

    /// The RGB channel index of model channel `c`.
    pub fn rgb_of(&self, c: usize) -> usize {
        match self.channel_order {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        }
    }

    /// Inverse of [`Self::preprocess`] for one value: model channel `c` to a
    /// 0..=255 pixel value (unclamped).
    pub fn to_pixel(&self, c: usize, v: f32) -> f32 {
        (v * self.std[c] + self.mean[c]) / self.scale
    }
}

/// Bilinear (triangle-filter) resize to `size` x `size`, the filter widened
/// when shrinking so every source pixel counts; SIMD through
/// fast_image_resize, with the image crate's own resize as the fallback.
fn resize_rgb(img: &RgbImage, size: u32) -> RgbImage {
    use fast_image_resize::{FilterType as Filter, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let fast = || -> Option<RgbImage> {
        let src = fast_image_resize::images::ImageRef::new(
            img.width(),
            img.height(),
            img.as_raw(),
            PixelType::U8x3,
        )
        .ok()?;
        let mut dst = fast_image_resize::images::Image::new(size, size, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(Filter::Bilinear));
        Resizer::new().resize(&src, &mut dst, &options).ok()?;
        RgbImage::from_raw(size, size, dst.into_vec())
    };
    fast().unwrap_or_else(|| image::imageops::resize(img, size, size, FilterType::Triangle))
}

/// Limits on images clients send.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_bytes: 32 << 20,
            max_pixels: 50_000_000,
        }
    }
}

/// What decoding did to an image beyond reading its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeNotes {
    /// The EXIF orientation applied (2..=8), or 0 when the file has none or
    /// it is the identity (1).
    pub exif_orientation: u8,
    /// The image had an alpha channel, composited over [`ALPHA_BACKGROUND`].
    pub alpha_composited: bool,
}

/// The colour transparent pixels are composited over: mid-grey, which the
/// preprocessing of the usual profiles maps close to zero input.
pub const ALPHA_BACKGROUND: [u8; 3] = [128, 128, 128];

/// What decoding `bytes` will do (orientation, alpha), read from the
/// headers alone.
pub fn decode_notes(bytes: &[u8]) -> DecodeNotes {
    let Ok(reader) = ImageReader::new(Cursor::new(bytes)).with_guessed_format() else {
        return DecodeNotes::default();
    };
    let Ok(mut decoder) = reader.into_decoder() else {
        return DecodeNotes::default();
    };
    let exif_orientation = decoder
        .orientation()
        .ok()
        .map(|o| o.to_exif())
        .filter(|&o| o != 1)
        .unwrap_or(0);
    DecodeNotes {
        exif_orientation,
        alpha_composited: decoder.color_type().has_alpha(),
    }
}

/// A JPEG whose entropy-coded data runs to its end marker: the last scan
/// (SOS) must be followed by an EOI. Decoders fill a cut file's missing
/// part with grey instead of failing; inside entropy-coded data 0xFF is
/// always followed by 0x00 or a restart marker, so an EOI there is real.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Decodes an encoded image to RGB, checking the declared size before any
/// pixel is decoded (decompression bombs stop here). The EXIF orientation
/// is applied and transparency composited over [`ALPHA_BACKGROUND`]
/// ([`decode_notes`] tells whether either happened); a truncated JPEG is
/// refused.
pub fn decode_image(bytes: &[u8], limits: ImageLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::BadImage("no image bytes".into()));
    }
    if bytes.len() > limits.max_bytes {
        return Err(Error::BadImage(format!(
            "{} bytes encoded; the limit is {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::BadImage(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::BadImage(
            "unrecognised format; send PNG, JPEG, WebP, GIF or BMP".into(),
        ));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_complete(bytes) {
        return Err(Error::BadImage(
            "truncated JPEG: the file ends before its last scan does".into(),
        ));
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| Error::BadImage(format!("corrupt image: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels == 0 || pixels > limits.max_pixels {
        return Err(Error::BadImage(format!(
            "{w}x{h} = {pixels} pixels; allowed 1..={} pixels",
            limits.max_pixels
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::BadImage(e.to_string()))?;
    let mut l = Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some(pixels * 16 + (64 << 20));
    reader.limits(l);
    let corrupt = |e: image::ImageError| Error::BadImage(format!("corrupt image: {e}"));
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    if !img.color().has_alpha() {
        return Ok(img.to_rgb8());
    }
    let rgba = img.to_rgba32f();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = p[3].clamp(0.0, 1.0);
        for c in 0..3 {
            let v = p[c].clamp(0.0, 1.0) * 255.0 * a + ALPHA_BACKGROUND[c] as f32 * (1.0 - a);
            o[c] = v.round() as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe_profile_is_bgr_minus_mean() {
        let p = Profile::named(ProfileName::Caffe, 2, Layout::Nhwc);
        let img = RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]));
        let (_, t) = p.preprocess(&img);
        assert!((t[0] - (30.0 - 103.939)).abs() < 1e-4);
        assert!((t[4] - (20.0 - 116.779)).abs() < 1e-4);
        assert!((t[8] - (10.0 - 123.68)).abs() < 1e-4);
        assert!((p.to_pixel(0, t[0]) - 30.0).abs() < 1e-3);
    }

    #[test]
    fn bomb_is_refused_before_decoding() {
        let png = crate::fixtures::png_declaring(30000, 30000);
        let err = decode_image(&png, ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("900000000 pixels"), "{err}");
        assert!(decode_image(b"", ImageLimits::default()).is_err());
        assert!(decode_image(b"not an image at all", ImageLimits::default()).is_err());
    }
}
