package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Options of "Explain tile" ({@code STImage.explain}): the genes (1-50), the method (LIME or
 * occlusion), what is explained (the mean or P(high)), LIME's sampling, and, for a model with
 * spatial context, the minimum tissue of the neighbouring tiles sent with the tile (Predict's
 * {@code minTissue}: the same value gives the tile the neighbours it was predicted with).
 */
public final class ExplainOptions extends BackendOptions {
    /** Default number of LIME samples (the paper's). */
    public static final int DEFAULT_NUM_SAMPLES = 1000;
    /** Option keys of {@link #fromMap(Map)}. */
    public static final List<String> KEYS;

    static {
        List<String> k = new ArrayList<>(List.of("model", "genes", "method", "target", "numSamples", "seed",
                "minTissue"));
        k.addAll(COMMON_KEYS);
        KEYS = List.copyOf(k);
    }

    private final String model;
    private final List<String> genes;
    private final String method;
    private final String target;
    private final int numSamples;
    private final long seed;
    private final double minTissue;

    private ExplainOptions(Builder b) {
        super("explain", b.server, b.timeoutS, b.mpp);
        model = b.model == null || b.model.isBlank() ? null : b.model.trim();
        if (b.genes == null || b.genes.isEmpty()) {
            throw new IllegalArgumentException("explain: option 'genes' is required: one gene (or up to 50) to "
                    + "explain, e.g. genes: ['ERBB2']");
        }
        if (b.genes.size() > 50) {
            throw new IllegalArgumentException("explain: at most 50 genes at once; got " + b.genes.size());
        }
        genes = List.copyOf(b.genes);
        method = b.method.toLowerCase(Locale.ROOT);
        if (!method.equals("lime") && !method.equals("occlusion")) {
            throw new IllegalArgumentException("explain: option 'method' must be 'lime' or 'occlusion'; got '"
                    + b.method + "'");
        }
        target = b.target.toLowerCase(Locale.ROOT);
        if (!target.equals("mean") && !target.equals("p_high")) {
            throw new IllegalArgumentException("explain: option 'target' must be 'mean' or 'p_high'; got '"
                    + b.target + "'");
        }
        OptionValues.range("explain", "numSamples", b.numSamples, 10, 10000);
        numSamples = b.numSamples;
        OptionValues.range("explain", "seed", b.seed, 0, 4294967295.0);
        seed = b.seed;
        OptionValues.range("explain", "minTissue", b.minTissue, 0, 1);
        minTissue = b.minTissue;
    }

    /** @return a builder with the defaults (genes still to set) */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * @param map options as scripts give them ({@code [genes: ['ERBB2']]})
     * @return the options
     * @throws IllegalArgumentException for unknown keys, bad values or no genes
     */
    public static ExplainOptions fromMap(Map<String, ?> map) {
        OptionValues v = new OptionValues("explain", map, KEYS);
        Builder b = builder();
        b.common(v);
        b.model(v.string("model"));
        b.genes(v.names("genes"));
        if (v.has("method")) {
            b.method(v.string("method"));
        }
        if (v.has("target")) {
            b.target(v.string("target"));
        }
        if (v.has("numSamples")) {
            b.numSamples(v.integer("numSamples"));
        }
        if (v.has("seed")) {
            Double s = v.number("seed");
            if (s != Math.rint(s)) {
                throw new IllegalArgumentException("explain: option 'seed' must be a whole number; got " + s);
            }
            b.seed(s.longValue());
        }
        if (v.has("minTissue")) {
            b.minTissue(v.number("minTissue"));
        }
        return b.build();
    }

    @Override
    void putOwn(Map<String, Object> m) {
        if (model != null) {
            m.put("model", model);
        }
        m.put("genes", genes);
        m.put("method", method);
        m.put("target", target);
        m.put("numSamples", numSamples);
        m.put("seed", seed);
        m.put("minTissue", minTissue);
    }

    /** @return the model name, or null for the backend's default */
    public String getModel() {
        return model;
    }

    /** @return the genes explained */
    public List<String> getGenes() {
        return genes;
    }

    /** @return {@code lime} or {@code occlusion} */
    public String getMethod() {
        return method;
    }

    /** @return {@code mean} or {@code p_high} */
    public String getTarget() {
        return target;
    }

    /** @return LIME's number of perturbed tiles */
    public int getNumSamples() {
        return numSamples;
    }

    /** @return LIME's seed */
    public long getSeed() {
        return seed;
    }

    /** @return minimum tissue fraction of a neighbouring tile sent (a model with spatial context) */
    public double getMinTissue() {
        return minTissue;
    }

    /** Builds {@link ExplainOptions}. */
    public static final class Builder extends AbstractBuilder<Builder> {
        private String model;
        private List<String> genes;
        private String method = "lime";
        private String target = "mean";
        private int numSamples = DEFAULT_NUM_SAMPLES;
        private long seed;
        private double minTissue = PredictOptions.DEFAULT_MIN_TISSUE;

        private Builder() {
        }

        /**
         * @param model a model name, or null for the backend's default
         * @return this
         */
        public Builder model(String model) {
            this.model = model;
            return this;
        }

        /**
         * @param genes the genes to explain (1-50)
         * @return this
         */
        public Builder genes(List<String> genes) {
            this.genes = genes == null ? null : new ArrayList<>(genes);
            return this;
        }

        /**
         * @param genes genes separated by commas or spaces
         * @return this
         */
        public Builder genes(String genes) {
            return genes(OptionValues.parseNames(genes));
        }

        /**
         * @param method {@code lime} (default) or {@code occlusion}
         * @return this
         */
        public Builder method(String method) {
            this.method = method == null ? "lime" : method.trim();
            return this;
        }

        /**
         * @param target {@code mean} (default) or {@code p_high}
         * @return this
         */
        public Builder target(String target) {
            this.target = target == null ? "mean" : target.trim();
            return this;
        }

        /**
         * @param numSamples LIME's perturbed tiles, 10-10000 (default 1000)
         * @return this
         */
        public Builder numSamples(int numSamples) {
            this.numSamples = numSamples;
            return this;
        }

        /**
         * @param seed LIME's seed (default 0)
         * @return this
         */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /**
         * @param minTissue neighbouring tiles with a smaller tissue fraction are not sent (0-1, default
         *     0.25, Predict's default: give the value Predict used)
         * @return this
         */
        public Builder minTissue(double minTissue) {
            this.minTissue = minTissue;
            return this;
        }

        /** @return the options */
        public ExplainOptions build() {
            return new ExplainOptions(this);
        }
    }
}
