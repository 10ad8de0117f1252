export { convertToMla, checkConvertible, type ConvertOptions, type ConvertedModel, type ConvertSummary, type LayerSummary } from './convert.js';
export { writeConvertedFolder } from './write-folder.js';
export { writeConvertedGguf, type ConvertedGgufOptions } from './write-gguf.js';
