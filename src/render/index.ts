// Rendering: single pictures with their parameters, grids, and platform-sized deliveries.
export { pngWithParameters, rgbToPng } from './png.js';
export { makeGrid, gridLayout, type GridLayout } from './grid.js';
export { encodeForDelivery, type Delivery, type DeliveryFormat, type DeliveryOptions } from './deliver.js';
