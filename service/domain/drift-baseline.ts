/**
 * A model's training distribution, from its card: per feature, the trainer's bin edges and the share of
 * training rows in each bin. Served values are counted into the same bins (PSI).
 */
export interface DriftBaseline {
  model_version: string;
  features: {
    name: string;
    bin_edges: number[];
    baseline_ratios: number[];
    /**
     * The shares per moment (service/features/moments.ts): per hour of the week for booking features, per month
     * for weather. A moment the card lacks reads as the year's `baseline_ratios`.
     */
    moments?: Record<string, number[]>;
  }[];
}
