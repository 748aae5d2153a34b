// Tiles and blending, a port of src/malleconv/inference/tiling.py (stream_tiles).
//
// Same tile starts, same raised-cosine windows and the same float32 arithmetic in the
// same order as the Python side, so that the page and `malleconv denoise` give the same
// 8-bit pixels from the same model outputs. Where Python rounds to float32 after every
// operation, this code does too (Math.fround, or a store into a Float32Array).

/** Start offsets of tiles of length `tile` covering `size` with overlaps >= `overlap`. */
export function tileStarts(size, tile, overlap) {
  if (size <= tile) return [0];
  const stride = tile - overlap;
  const n = Math.max(Math.ceil((size - overlap) / stride), 2);
  // Evenly spread: the first tile starts at 0, the last one ends on the border. Python's
  // round() rounds halves to even, so this does too.
  const starts = [];
  for (let i = 0; i < n; i++) starts.push(roundHalfEven((i * (size - tile)) / (n - 1)));
  return starts;
}

/** Raised cosine rising over `n` samples (float64); ramp[i] + ramp[n - 1 - i] == 1. */
export function ramp(n) {
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = 0.5 - 0.5 * Math.cos((Math.PI * (i + 0.5)) / n);
  return r;
}

/** Blending weights (float64) of a tile: 1, with the ramp on sides bordering another tile. */
export function tileWindow(length, rampValues, left, right) {
  const w = new Float64Array(length).fill(1);
  const n = rampValues.length;
  if (n) {
    if (left) for (let i = 0; i < n; i++) w[i] = rampValues[i];
    if (right) {
      for (let i = 0; i < n; i++) {
        const k = length - n + i;
        w[k] = Math.min(w[k], rampValues[n - 1 - i]);
      }
    }
  }
  return w;
}

/** numpy.rint / Python round(): halves to even. */
export function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** malleconv.io.from_float for one value: NaN -> 0, clip to [0, 1], * 255, halves to even. */
export function toByte(v) {
  if (!(v > 0)) return 0; // NaN and negatives
  if (v >= 1) return 255;
  return roundHalfEven(v * 255);
}

/**
 * The tile plan of an image: tile starts, tile sizes and float32 windows, as
 * tiling._blend_tiles computes them (float64, then cast to float32).
 */
export function planTiles(height, width, tile, overlap) {
  const ys = tileStarts(height, tile, overlap);
  const xs = tileStarts(width, tile, overlap);
  const th = Math.min(tile, height);
  const tw = Math.min(tile, width);
  const r = ramp(overlap);
  const wy64 = ys.map((_, i) => tileWindow(th, r, i > 0, i < ys.length - 1));
  const wx64 = xs.map((_, j) => tileWindow(tw, r, j > 0, j < xs.length - 1));
  const totalY = new Float64Array(height);
  const totalX = new Float64Array(width);
  ys.forEach((y0, i) => wy64[i].forEach((v, k) => (totalY[y0 + k] += v)));
  xs.forEach((x0, j) => wx64[j].forEach((v, k) => (totalX[x0 + k] += v)));
  return {
    ys,
    xs,
    th,
    tw,
    wy: wy64.map((w) => Float32Array.from(w)),
    wx: wx64.map((w) => Float32Array.from(w)),
    totalY,
    invX: Float32Array.from(totalX, (t) => 1 / t),
  };
}

/**
 * Runs `denoiseTile(x0, y0)` on every tile and blends the results, top to bottom, holding
 * one row of tiles (plus the rows it shares with the next) in float32, never the image.
 *
 * `denoiseTile(y0, x0)` resolves to the model's (3, th, tw) float32 output, channel-planar;
 * `emitRows(y0, rows, n)` receives `n` finished, normalised rows (3, n, width) planar with
 * row stride `width` (a view into the band; copy what is kept); `progress(done, total)`
 * is called after each tile. Returns false when `cancelled()` said to stop.
 */
export async function blendTiles(plan, width, denoiseTile, emitRows, progress, cancelled) {
  const { ys, xs, th, tw, wy, wx, totalY, invX } = plan;
  const plane = th * width;
  const total = ys.length * xs.length;
  let done = 0;
  let pending = null;
  let pendingY0 = 0;
  for (let i = 0; i < ys.length; i++) {
    const y0 = ys[i];
    const band = new Float32Array(3 * plane);
    for (let j = 0; j < xs.length; j++) {
      if (cancelled()) return false;
      const x0 = xs[j];
      const pred = await denoiseTile(y0, x0);
      const w = wx[j];
      // band[..., sx] += pred * wx[j]: the product rounded to float32, then the sum.
      for (let c = 0; c < 3; c++) {
        for (let r = 0; r < th; r++) {
          const src = c * th * tw + r * tw;
          const dst = c * plane + r * width + x0;
          for (let x = 0; x < tw; x++) band[dst + x] += Math.fround(pred[src + x] * w[x]);
        }
      }
      done += 1;
      progress(done, total);
    }
    // band *= wy[i]
    const wyi = wy[i];
    for (let c = 0; c < 3; c++) {
      for (let r = 0; r < th; r++) {
        const off = c * plane + r * width;
        const f = wyi[r];
        for (let x = 0; x < width; x++) band[off + x] *= f;
      }
    }
    if (pending !== null) {
      // Rows above this tile row are final; the rest overlap it.
      const final = y0 - pendingY0;
      emitRows(pendingY0, normalise(pending, th, width, pendingY0, final, totalY, invX), final);
      for (let c = 0; c < 3; c++) {
        for (let r = 0; r < th - final; r++) {
          const dst = c * plane + r * width;
          const src = c * plane + (r + final) * width;
          for (let x = 0; x < width; x++) band[dst + x] += pending[src + x];
        }
      }
    }
    pending = band;
    pendingY0 = y0;
  }
  emitRows(pendingY0, normalise(pending, th, width, pendingY0, th, totalY, invX), th);
  return true;
}

/** The first `n` rows of a band, times inv_y (float32 of 1 / total_y) and then inv_x. */
function normalise(band, th, width, y0, n, totalY, invX) {
  const out = new Float32Array(3 * n * width);
  for (let r = 0; r < n; r++) {
    const invY = Math.fround(1 / totalY[y0 + r]);
    for (let c = 0; c < 3; c++) {
      const src = c * th * width + r * width;
      const dst = c * n * width + r * width;
      for (let x = 0; x < width; x++) {
        out[dst + x] = Math.fround(band[src + x] * invY) * invX[x];
      }
    }
  }
  return out;
}
