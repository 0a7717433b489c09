/**
 * A model's training distribution, from its card: per feature, the trainer's bin edges and the share of
 * training rows in each bin. Served values are counted into the same bins (PSI).
 */
export interface DriftBaseline {
  model_version: string;
  features: { name: string; bin_edges: number[]; baseline_ratios: number[] }[];
}
