// The half-resolution pass of the automatic mode (auto.py's half_resolution and merge_half):
// grain several pixels wide is pixel-scale again in the image's 2x2 block means, so the blind
// model also denoises those and the output's low band is taken from that pass. Tensors are
// float32, channel-planar `c x h x w`, as the graphs take them.

const f32 = Math.fround;

/**
 * half_resolution: the 2x2 block means of `x` (`c x h x w`), an odd last row or column
 * repeated. Returns {data, height, width} with `ceil(h / 2) x ceil(w / 2)` planes.
 */
export function halfResolution(x, c, h, w) {
  const h2 = (h + 1) >> 1;
  const w2 = (w + 1) >> 1;
  const out = new Float32Array(c * h2 * w2);
  for (let p = 0; p < c; p++) {
    const src = p * h * w;
    const dst = p * h2 * w2;
    for (let y = 0; y < h2; y++) {
      const top = src + 2 * y * w;
      const bottom = src + Math.min(2 * y + 1, h - 1) * w;
      for (let i = 0; i < w2; i++) {
        const x0 = 2 * i;
        const x1 = Math.min(x0 + 1, w - 1);
        // avg_pool2d's order: ((a + b) + c) + d, then divided by 4.
        out[dst + y * w2 + i] = f32(f32(f32(f32(x[top + x0] + x[top + x1]) + x[bottom + x0]) +
          x[bottom + x1]) / 4);
      }
    }
  }
  return { data: out, height: h2, width: w2 };
}

// Source index and weight of output index i for a bilinear 2x enlargement with half-pixel
// centres (F.interpolate, align_corners=False): src = (i + 0.5) / 2 - 0.5, clamped at 0.
function taps(n2, n) {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const l1 = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const src = Math.max(f32(f32(0.5 * (i + 0.5)) - 0.5), 0);
    const lo = Math.floor(src);
    i0[i] = lo;
    i1[i] = lo < n2 - 1 ? lo + 1 : lo;
    l1[i] = f32(src - lo);
  }
  return { i0, i1, l1 };
}

/**
 * merge_half, in place: `full` (`c x h x w`, the full-resolution output) plus the bilinear
 * 2x enlargement of `half - halfResolution(full)` (`half`: the pass over the block means,
 * `c x ceil(h / 2) x ceil(w / 2)`), cropped to `h x w`.
 */
export function mergeHalf(full, half, c, h, w) {
  const low = halfResolution(full, c, h, w);
  const h2 = low.height;
  const w2 = low.width;
  const diff = low.data;
  for (let k = 0; k < diff.length; k++) diff[k] = f32(half[k] - diff[k]);
  const ys = taps(h2, 2 * h2);
  const xs = taps(w2, 2 * w2);
  for (let p = 0; p < c; p++) {
    const plane = p * h2 * w2;
    for (let y = 0; y < h; y++) {
      const r0 = plane + ys.i0[y] * w2;
      const r1 = plane + ys.i1[y] * w2;
      const ly1 = ys.l1[y];
      const ly0 = f32(1 - ly1);
      const row = p * h * w + y * w;
      for (let x = 0; x < w; x++) {
        const a = xs.i0[x];
        const b = xs.i1[x];
        const lx1 = xs.l1[x];
        const lx0 = f32(1 - lx1);
        const top = f32(f32(lx0 * diff[r0 + a]) + f32(lx1 * diff[r0 + b]));
        const bottom = f32(f32(lx0 * diff[r1 + a]) + f32(lx1 * diff[r1 + b]));
        full[row + x] = f32(full[row + x] + f32(f32(ly0 * top) + f32(ly1 * bottom)));
      }
    }
  }
  return full;
}
