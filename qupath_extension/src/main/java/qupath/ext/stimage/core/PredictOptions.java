package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Options of "Predict expression" ({@code STImage.predict}): which model and genes, which part of
 * the image, how many tiles per request, which tiles to skip as glass.
 *
 * <pre>{@code
 * PredictOptions o = PredictOptions.builder().genes(List.of("ERBB2", "GATA3")).batchSize(32).build();
 * PredictOptions p = PredictOptions.fromMap(Map.of("genes", "ERBB2, GATA3"));   // what scripts pass
 * }</pre>
 */
public final class PredictOptions extends BackendOptions {
    /** Default tiles per request. */
    public static final int DEFAULT_BATCH_SIZE = 32;
    /** Default minimum tissue fraction of a tile sent (0 sends every tile). */
    public static final double DEFAULT_MIN_TISSUE = 0.25;
    /** Option keys of {@link #fromMap(Map)}. */
    public static final List<String> KEYS;

    static {
        List<String> k = new ArrayList<>(List.of("model", "genes", "region", "batchSize", "minTissue", "level"));
        k.addAll(COMMON_KEYS);
        KEYS = List.copyOf(k);
    }

    private final String model;
    private final List<String> genes;
    private final Region region;
    private final int batchSize;
    private final double minTissue;
    private final Double level;

    private PredictOptions(Builder b) {
        super("predict", b.server, b.timeoutS, b.mpp);
        model = b.model == null || b.model.isBlank() ? null : b.model.trim();
        genes = b.genes == null || b.genes.isEmpty() ? null : List.copyOf(b.genes);
        region = b.region;
        OptionValues.range("predict", "batchSize", b.batchSize, 1, 512);
        batchSize = b.batchSize;
        OptionValues.range("predict", "minTissue", b.minTissue, 0, 1);
        minTissue = b.minTissue;
        if (b.level != null && !(b.level > 0 && b.level < 1)) {
            throw new IllegalArgumentException("predict: option 'level' must lie in (0, 1); got " + b.level);
        }
        level = b.level;
    }

    /** @return a builder with the defaults */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * @param map options as scripts give them ({@code [genes: ['ERBB2'], batchSize: 32]}); null for defaults
     * @return the options
     * @throws IllegalArgumentException for unknown keys or bad values
     */
    public static PredictOptions fromMap(Map<String, ?> map) {
        OptionValues v = new OptionValues("predict", map, KEYS);
        Builder b = builder();
        b.common(v);
        b.model(v.string("model"));
        b.genes(v.names("genes"));
        if (v.has("region")) {
            b.region(Region.parse(v.string("region")));
        }
        if (v.has("batchSize")) {
            b.batchSize(v.integer("batchSize"));
        }
        if (v.has("minTissue")) {
            b.minTissue(v.number("minTissue"));
        }
        b.level(v.number("level"));
        return b.build();
    }

    @Override
    void putOwn(Map<String, Object> m) {
        if (model != null) {
            m.put("model", model);
        }
        if (genes != null) {
            m.put("genes", genes);
        }
        m.put("region", region.getKey());
        m.put("batchSize", batchSize);
        m.put("minTissue", minTissue);
        if (level != null) {
            m.put("level", level);
        }
    }

    /** @return the model name, or null for the backend's default */
    public String getModel() {
        return model;
    }

    /** @return the genes, or null for all of the model's */
    public List<String> getGenes() {
        return genes;
    }

    /** @return which part of the image */
    public Region getRegion() {
        return region;
    }

    /** @return tiles per request */
    public int getBatchSize() {
        return batchSize;
    }

    /** @return minimum tissue fraction of a tile sent */
    public double getMinTissue() {
        return minTissue;
    }

    /** @return the level of the predictive interval, or null for the backend's (0.9) */
    public Double getLevel() {
        return level;
    }

    /** Builds {@link PredictOptions}. */
    public static final class Builder extends AbstractBuilder<Builder> {
        private String model;
        private List<String> genes;
        private Region region = Region.SELECTED;
        private int batchSize = DEFAULT_BATCH_SIZE;
        private double minTissue = DEFAULT_MIN_TISSUE;
        private Double level;

        private Builder() {
        }

        /**
         * @param model a model name of the backend, or null for its default
         * @return this
         */
        public Builder model(String model) {
            this.model = model;
            return this;
        }

        /**
         * @param genes genes to predict, or null / empty for all
         * @return this
         */
        public Builder genes(List<String> genes) {
            this.genes = genes == null ? null : new ArrayList<>(genes);
            return this;
        }

        /**
         * @param genes genes separated by commas or spaces, or null / blank for all
         * @return this
         */
        public Builder genes(String genes) {
            return genes(OptionValues.parseNames(genes));
        }

        /**
         * @param region which part of the image (default: selected annotations, or the whole image)
         * @return this
         */
        public Builder region(Region region) {
            this.region = region == null ? Region.SELECTED : region;
            return this;
        }

        /**
         * @param batchSize tiles per request, 1-512 (default 32)
         * @return this
         */
        public Builder batchSize(int batchSize) {
            this.batchSize = batchSize;
            return this;
        }

        /**
         * @param minTissue tiles with a smaller tissue fraction are not sent (0-1, default 0.25)
         * @return this
         */
        public Builder minTissue(double minTissue) {
            this.minTissue = minTissue;
            return this;
        }

        /**
         * @param level level of the predictive interval in (0, 1), or null for the backend's 0.9
         * @return this
         */
        public Builder level(Double level) {
            this.level = level;
            return this;
        }

        /**
         * @return the options
         * @throws IllegalArgumentException for values out of range
         */
        public PredictOptions build() {
            return new PredictOptions(this);
        }
    }
}
