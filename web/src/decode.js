// Checking and decoding a photo file into RGBA bytes, with the limits stated on the page.

export const LIMITS = {
  // The page holds the input and the output as RGBA bytes (8 bytes a pixel) plus what the
  // canvases hold; 50 MP keeps that around 1 GB, which browsers allow a tab. The tiles
  // bound the model's share, whatever the size.
  megapixels: 50,
  side: 16384, // the largest canvas side browsers draw
  megabytes: 100,
};

const TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const EXTENSIONS = /\.(jpe?g|png|webp)$/i;

/** A message when `file` cannot be a photo this page takes, else null. */
export function checkFile(file) {
  const known = TYPES.has(file.type) || (file.type === "" && EXTENSIONS.test(file.name));
  if (!known) {
    const what = file.type ? `a ${file.type} file` : "not an image file";
    return `${file.name} is ${what}: choose a JPEG, PNG or WebP photo.`;
  }
  if (file.size > LIMITS.megabytes * 1e6) {
    return `${file.name} is ${(file.size / 1e6).toFixed(0)} MB; the limit is ` +
      `${LIMITS.megabytes} MB.`;
  }
  return null;
}

/**
 * Decodes `file` into {width, height, rgba}. Colour values are taken as stored (no colour
 * management, not premultiplied), as `malleconv denoise` reads them, with the EXIF
 * orientation applied, as it does. Throws an Error with a message for the page.
 */
export async function decodeImage(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      imageOrientation: "from-image",
    });
  } catch {
    return Promise.reject(new Error(
      `${file.name} could not be decoded: it is not a JPEG, PNG or WebP image, or it is damaged.`,
    ));
  }
  const { width, height } = bitmap;
  try {
    if (width * height > LIMITS.megapixels * 1e6 || Math.max(width, height) > LIMITS.side) {
      throw new Error(
        `${file.name} is ${width}x${height} (${((width * height) / 1e6).toFixed(1)} MP); ` +
        `this page takes up to ${LIMITS.megapixels} MP and ${LIMITS.side} pixels a side. ` +
        "Use `malleconv denoise` for bigger images.",
      );
    }
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    return { width, height, rgba };
  } finally {
    bitmap.close();
  }
}
