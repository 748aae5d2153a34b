// The automatic mode's readings and choice, a port of src/malleconv/inference/noise_level.py
// (read_noise), noise_floor.py (read_noise_floor) and auto.py (AutoDenoiser.route,
// white_level), so that the page decides as `malleconv denoise` does with no --sigma and
// no --model. The constants are not written here: `malleconv web --prepare` writes them
// from the Python modules into models/auto.json, which the worker reads.
//
// Same arithmetic as numpy, so the readings equal Python's to double rounding: the planes
// are float32 (uint8 / 255, as malleconv.io.to_float), the Haar bands and block means are
// computed in float32 in numpy's order of operations (Math.fround after every step: a
// double result rounded once to float32 is the correctly rounded float32 result for + - *
// / and sqrt), medians and percentiles are numpy's (median of an even count: the mean of
// the two middle values, in float32; percentile: method 'linear').
// tests/test_web.py checks this against Python on arrays and on the page's photos.

const f32 = Math.fround;

// uint8 -> float32 in [0, 1], as malleconv.io.to_float (pixels / float32(255)).
const BYTE_TO_FLOAT = new Float32Array(256);
for (let v = 0; v < 256; v++) BYTE_TO_FLOAT[v] = v / 255;

/**
 * The settings from models/auto.json (written by `malleconv web --prepare`) in the form
 * this module takes: {whiteMaxRatio, floorCap, floorBaseline, cleanFloor, minFloor, floorBound,
 * boundRatio, boundMaxFine, halfPassRatio, sigmaMin, sigmaMax, madToStd,
 * floorPercentile, block, coarseBlock, dark, bright, whiteModel, blindModel, tile,
 * tileOverlap} (the last two: the command's default tiling).
 */
export function settingsFrom(json) {
  const need = [
    "white_max_ratio", "floor_cap", "floor_baseline", "clean_floor", "min_floor", "floor_bound",
    "bound_ratio", "bound_max_fine", "half_pass_ratio", "sigma_min", "sigma_max", "mad_to_std",
    "floor_percentile", "block", "coarse_block", "dark", "bright", "white_model", "blind_model",
    "tile", "tile_overlap",
  ];
  const missing = need.filter((k) => typeof json[k] !== (k.endsWith("model") ? "string" : "number"));
  if (missing.length) {
    throw new Error(`models/auto.json lacks ${missing.join(", ")}: run \`malleconv web --prepare\``);
  }
  return {
    whiteMaxRatio: json.white_max_ratio, floorCap: json.floor_cap, cleanFloor: json.clean_floor,
    minFloor: json.min_floor, floorBaseline: json.floor_baseline,
    floorBound: json.floor_bound, boundRatio: json.bound_ratio, boundMaxFine: json.bound_max_fine,
    halfPassRatio: json.half_pass_ratio,
    sigmaMin: json.sigma_min, sigmaMax: json.sigma_max, madToStd: json.mad_to_std,
    floorPercentile: json.floor_percentile, block: json.block, coarseBlock: json.coarse_block,
    dark: json.dark, bright: json.bright,
    whiteModel: json.white_model, blindModel: json.blind_model,
    tile: json.tile, tileOverlap: json.tile_overlap,
  };
}

/**
 * `plane` (float32 values, row-major `height x width`) -> its finest Haar diagonal band and
 * its 2x2 block means, both `floor(height / 2) x floor(width / 2)` (noise_floor._haar).
 * `get(i)` reads the value of pixel i of the plane (a float32 number).
 */
function haar(get, width, height) {
  const h2 = height >> 1;
  const w2 = width >> 1;
  const hh = new Float32Array(h2 * w2);
  const mean = new Float32Array(h2 * w2);
  for (let y = 0; y < h2; y++) {
    const top = 2 * y * width;
    const bottom = top + width;
    for (let x = 0; x < w2; x++) {
      const a = get(top + 2 * x);
      const b = get(top + 2 * x + 1);
      const c = get(bottom + 2 * x);
      const d = get(bottom + 2 * x + 1);
      // numpy: (a - b - c + d) * float32(0.5) and (a + b + c + d) * float32(0.25).
      hh[y * w2 + x] = f32(f32(f32(a - b) - c) + d) * 0.5;
      mean[y * w2 + x] = f32(f32(f32(a + b) + c) + d) * 0.25;
    }
  }
  return { hh, mean, width: w2, height: h2 };
}

/** The k-th smallest of `values` (0-based), reordering it (quickselect, Hoare's scheme). */
function select(values, k) {
  let lo = 0;
  let hi = values.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    // Median of three as the pivot.
    let p0 = values[lo], p1 = values[mid], p2 = values[hi];
    if (p0 > p1) [p0, p1] = [p1, p0];
    if (p1 > p2) [p1, p2] = [p2, p1];
    if (p0 > p1) [p0, p1] = [p1, p0];
    const pivot = p1;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k];
  }
  return values[k];
}

/** numpy.median of float32 `values` (reordered): float32, mean of the two middle values
 * of an even count. */
export function median(values) {
  const n = values.length;
  if (n === 0) return NaN;
  const k = n >> 1;
  const upper = select(values, k);
  if (n % 2 === 1) return upper;
  // After the select, values[0..k) hold the k smallest: the lower middle is their maximum.
  let lower = -Infinity;
  for (let i = 0; i < k; i++) if (values[i] > lower) lower = values[i];
  return f32(f32(lower + upper) / 2);
}

/** numpy.percentile(values, q) of float32 `values` (method 'linear'; float32 result). */
export function percentile(values, q) {
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float32Array.from(values).sort();
  const virtual = (n - 1) * (q / 100);
  if (virtual >= n - 1) return sorted[n - 1];
  if (virtual < 0) return sorted[0];
  const prev = Math.floor(virtual);
  const a = sorted[prev];
  const b = sorted[prev + 1];
  const t = virtual - prev;
  // numpy's _lerp in float32 (the weight is a Python float, cast to float32).
  const diff = f32(b - a);
  if (t >= 0.5) return f32(b - f32(diff * f32(1 - t)));
  return f32(a + f32(diff * f32(t)));
}

/** noise_level._plane_sigma on a Haar band: median |hh| / 0.6745 (0 when empty). */
function bandSigma(band, s) {
  if (band.width < 1 || band.height < 1) return 0;
  const abs = new Float32Array(band.hh.length);
  for (let i = 0; i < abs.length; i++) abs[i] = Math.abs(band.hh[i]);
  return median(abs) / s.madToStd;
}

/**
 * noise_floor._block_rms on a Haar band: the RMS of the band in each `block x block` block
 * of coefficients whose mean (of the band's block means) is neither near black nor near
 * white, times `scale`; pushed onto `out` (a plain array of float32 numbers).
 */
function blockRms(band, block, scale, s, out) {
  const rows = Math.floor(band.height / block);
  const cols = Math.floor(band.width / block);
  if (rows === 0 || cols === 0) return;
  const dark = f32(s.dark); // numpy compares float32 with a Python float in float32
  const bright = f32(s.bright);
  const { hh, mean, width } = band;
  const square = new Float32Array(hh.length); // np.square(hh), float32
  for (let i = 0; i < hh.length; i++) square[i] = f32(hh[i] * hh[i]);
  const count = block * block;
  // One column of blocks: numpy coalesces a block's rows into one run of `count` values.
  const whole = cols === 1 ? new Float32Array(count) : null;
  const wholeMean = cols === 1 ? new Float32Array(count) : null;
  for (let by = 0; by < rows; by++) {
    for (let bx = 0; bx < cols; bx++) {
      // numpy's mean over axes (1, 3) of the (rows, block, cols, block) view, in float32:
      // each block row summed (numpy's pairwise sum), the rows added in order, then
      // divided by the count; with one column of blocks, the whole block summed at once.
      let sq = 0;
      let lv = 0;
      if (whole) {
        for (let r = 0; r < block; r++) {
          const start = (by * block + r) * width;
          for (let c = 0; c < block; c++) {
            whole[r * block + c] = square[start + c];
            wholeMean[r * block + c] = mean[start + c];
          }
        }
        sq = pairwiseSum(whole, 0, count);
        lv = pairwiseSum(wholeMean, 0, count);
      } else {
        for (let r = 0; r < block; r++) {
          const start = (by * block + r) * width + bx * block;
          sq = f32(sq + pairwiseSum(square, start, block));
          lv = f32(lv + pairwiseSum(mean, start, block));
        }
      }
      const level = f32(lv / count);
      if (!(level > dark && level < bright)) continue;
      out.push(f32(f32(Math.sqrt(f32(sq / count))) * scale));
    }
  }
}

/** numpy's float32 pairwise sum (pairwise_sum in its loops) of `n` values from `start`. */
function pairwiseSum(v, start, n) {
  if (n === 8) { // the common case, written out: the same sums as below
    const i = start;
    return f32(
      f32(f32(v[i] + v[i + 1]) + f32(v[i + 2] + v[i + 3])) +
        f32(f32(v[i + 4] + v[i + 5]) + f32(v[i + 6] + v[i + 7])),
    );
  }
  if (n < 8) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum = f32(sum + v[start + i]);
    return sum;
  }
  if (n <= 128) {
    const r = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => v[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = f32(r[j] + v[start + i + j]);
    }
    let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) res = f32(res + v[start + i]);
    return res;
  }
  let half = n >> 1;
  half -= half % 8;
  return f32(pairwiseSum(v, start, half) + pairwiseSum(v, start + half, n - half));
}

/** noise_floor._floor: percentile of the pooled block RMS, bias-corrected, 8-bit units. */
function floorOf(values, block, s) {
  if (values.length === 0) return 0;
  const bias = 1 - 1.645 / Math.sqrt(2 * block * block);
  return (percentile(values, s.floorPercentile) / bias) * 255;
}

function level(sigmas, s) {
  let sum = 0;
  for (const v of sigmas) sum += v;
  return Math.min(Math.max((sum / sigmas.length) * 255, s.sigmaMin), s.sigmaMax);
}

/**
 * Both readings of an image, one colour plane at a time: read_noise (`sigma`,
 * `coarseSigma`, `ratio`) and read_noise_floor (`floor`: {fine, coarse, level}), in 8-bit
 * units. `planes` is a list of functions `(i) => float32 value of pixel i` (or Float32Arrays),
 * each `height x width`, row-major. Settings: settingsFrom().
 */
export function readImage(planes, width, height, s) {
  const fine = [];
  const coarse = [];
  const fineRms = [];
  const coarseRms = [];
  for (const plane of planes) {
    const get = typeof plane === "function" ? plane : (i) => plane[i];
    const band = haar(get, width, height);
    const half = haar((i) => band.mean[i], band.width, band.height);
    fine.push(bandSigma(band, s));
    // _coarse_plane_sigma: 0 under 4 x 4 (after trimming to even sides).
    const big = height - (height % 2) >= 4 && width - (width % 2) >= 4;
    coarse.push(big ? 2 * bandSigma(half, s) : 0);
    blockRms(band, s.block, 1, s, fineRms);
    blockRms(half, s.coarseBlock, 2, s, coarseRms);
  }
  const sigma = fine.length ? level(fine, s) : 0;
  const coarseSigma = coarse.length ? level(coarse, s) : 0;
  const floorFine = floorOf(Float32Array.from(fineRms), s.block, s);
  const floorCoarse = floorOf(Float32Array.from(coarseRms), s.coarseBlock, s);
  return {
    sigma,
    coarseSigma,
    ratio: sigma > 0 ? coarseSigma / sigma : Infinity,
    floor: { fine: floorFine, coarse: floorCoarse, level: Math.max(floorFine, floorCoarse) },
  };
}

/** readImage() of RGBA bytes (alpha ignored), each channel as uint8 / 255 in float32. */
export function readRGBA(rgba, width, height, s) {
  const planes = [0, 1, 2].map((c) => (i) => BYTE_TO_FLOAT[rgba[4 * i + c]]);
  return readImage(planes, width, height, s);
}

/**
 * read_half_floor: the noise floor ({fine, coarse, level}) of the image's 2x2 block means
 * (odd last rows and columns dropped), the image the half-resolution pass denoises. `planes`
 * as readImage's.
 */
export function readHalfFloor(planes, width, height, s) {
  const halves = planes.map((plane) => {
    const get = typeof plane === "function" ? plane : (i) => plane[i];
    return haar(get, width, height).mean;
  });
  return readImage(halves, width >> 1, height >> 1, s).floor;
}

/** readHalfFloor() of RGBA bytes (alpha ignored). */
export function readHalfFloorRGBA(rgba, width, height, s) {
  const planes = [0, 1, 2].map((c) => (i) => BYTE_TO_FLOAT[rgba[4 * i + c]]);
  return readHalfFloor(planes, width, height, s);
}

// auto.py's level_cap: the most level on an image with this floor.
function capOf(floor, s) {
  const level = floor.level;
  // A floor below minFloor (flat areas flattened by JPEG or smoothing) sets no cap. The cap
  // applies to the noise in the floor: a clean photo's own floor taken out in quadrature
  // (auto.py's floor_noise).
  const noise = Math.sqrt(Math.max(level * level - s.floorBaseline * s.floorBaseline, 0));
  return level >= s.minFloor ? s.floorCap * noise : s.sigmaMax;
}

// auto.py's level_bound: noise coarser than one pixel, which the learned map under-reads,
// gets at least floorBound times the coarse floor, unless the image reads as clean or its fine
// floor is boundMaxFine or more (no flat area: the floor reads texture) (0: none).
function boundOf(floor, s) {
  const coarse = floor.coarse >= s.boundRatio * floor.fine && floor.fine < s.boundMaxFine
    && floor.level >= s.cleanFloor;
  return s.floorBound > 0 && coarse ? s.floorBound * floor.coarse : 0;
}

/**
 * AutoDenoiser.route and white_level: which model runs and with what.
 * Returns {model, kind, sigma (the white level the model gets, or null for the blind
 * model), cap, maxLevel (the blind model's cap, or null), minLevel (its least level: 0 for
 * none), halfPass (true: the blind model also denoises the 2x2 block means, whose cap and
 * bound halfLevels() gives from readHalfFloor()), strength (what the graph gets)}.
 */
export function route(reading, strength, s) {
  const level = reading.floor.level;
  const cap = capOf(reading.floor, s);
  const white = reading.ratio < s.whiteMaxRatio;
  const clean = level >= s.minFloor && level < s.cleanFloor;
  const kind = clean ? "clean" : white ? "white noise" : "camera noise";
  if (white) {
    const sigma = Math.min(Math.min(reading.sigma, cap) * strength, s.sigmaMax);
    // The strength is in the level: the graph gets strength 1, as the command runs it.
    return { model: s.whiteModel, kind, sigma, cap, maxLevel: null, minLevel: 0,
      halfPass: false, strength: 1 };
  }
  const minLevel = boundOf(reading.floor, s);
  // Grain wider still: the half-resolution pass (auto.py's AutoDenoiser.route).
  const halfPass = minLevel > 0 && s.halfPassRatio > 0 && reading.ratio >= s.halfPassRatio;
  return { model: s.blindModel, kind, sigma: null, cap, maxLevel: cap, minLevel, halfPass,
    strength };
}

/** HalfPass: the cap and least level (0: none) of the half-resolution pass, from the floor
 * at half resolution (readHalfFloor). */
export function halfLevels(halfFloor, s) {
  return { maxLevel: capOf(halfFloor, s), minLevel: boundOf(halfFloor, s) };
}
