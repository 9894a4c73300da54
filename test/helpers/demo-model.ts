// What the demo-model tests look at in a picture: how red it is against green, so an assertion
// depends on what the model learned ("red apple" is red, "green apple" green) and fails on a wrong
// VAE scaling, channel order or text conditioning.
import sharp from 'sharp';

/** Packed RGB of a PNG or JPEG (alpha dropped). */
export async function rgbOf(file: Buffer): Promise<Uint8Array> {
  const { data } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Mean of (red − green) over the picture's pixels, −255…255: above 0 for a red picture on white,
 * below 0 for a green one (the white background adds nothing). */
export function redOverGreen(rgb: Uint8Array): number {
  let sum = 0;
  for (let p = 0; p + 2 < rgb.length; p += 3) sum += rgb[p]! - rgb[p + 1]!;
  return sum / (rgb.length / 3);
}
