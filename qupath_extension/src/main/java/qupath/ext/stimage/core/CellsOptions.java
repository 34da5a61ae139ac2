package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Options of "Detect cells" ({@code STImage.detectCells}): which part of the image, whether to
 * type the cells, and the size of the pieces the region is sent in.
 */
public final class CellsOptions extends BackendOptions {
    /** Default side of the core of one piece of the region, in full-resolution pixels. */
    public static final int DEFAULT_CHUNK_PX = 1024;
    /** Option keys of {@link #fromMap(Map)}. */
    public static final List<String> KEYS;

    static {
        List<String> k = new ArrayList<>(List.of("region", "classify", "chunkPx"));
        k.addAll(COMMON_KEYS);
        KEYS = List.copyOf(k);
    }

    private final Region region;
    private final boolean classify;
    private final int chunkPx;

    private CellsOptions(Builder b) {
        super("detectCells", b.server, b.timeoutS, b.mpp);
        region = b.region;
        classify = b.classify;
        OptionValues.range("detectCells", "chunkPx", b.chunkPx, 256, 3072);
        chunkPx = b.chunkPx;
    }

    /** @return a builder with the defaults */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * @param map options as scripts give them; null for defaults
     * @return the options
     * @throws IllegalArgumentException for unknown keys or bad values
     */
    public static CellsOptions fromMap(Map<String, ?> map) {
        OptionValues v = new OptionValues("detectCells", map, KEYS);
        Builder b = builder();
        b.common(v);
        if (v.has("region")) {
            b.region(Region.parse(v.string("region")));
        }
        if (v.has("classify")) {
            b.classify(v.bool("classify"));
        }
        if (v.has("chunkPx")) {
            b.chunkPx(v.integer("chunkPx"));
        }
        return b.build();
    }

    @Override
    void putOwn(Map<String, Object> m) {
        m.put("region", region.getKey());
        m.put("classify", classify);
        m.put("chunkPx", chunkPx);
    }

    /** @return which part of the image */
    public Region getRegion() {
        return region;
    }

    /** @return whether cells are typed (else only segmented) */
    public boolean isClassify() {
        return classify;
    }

    /** @return side of a piece's core in full-resolution pixels */
    public int getChunkPx() {
        return chunkPx;
    }

    /** Builds {@link CellsOptions}. */
    public static final class Builder extends AbstractBuilder<Builder> {
        private Region region = Region.SELECTED;
        private boolean classify = true;
        private int chunkPx = DEFAULT_CHUNK_PX;

        private Builder() {
        }

        /**
         * @param region which part of the image
         * @return this
         */
        public Builder region(Region region) {
            this.region = region == null ? Region.SELECTED : region;
            return this;
        }

        /**
         * @param classify type the cells (default true)
         * @return this
         */
        public Builder classify(boolean classify) {
            this.classify = classify;
            return this;
        }

        /**
         * @param chunkPx side of a piece's core, 256-3072 full-resolution pixels (default 1024)
         * @return this
         */
        public Builder chunkPx(int chunkPx) {
            this.chunkPx = chunkPx;
            return this;
        }

        /** @return the options */
        public CellsOptions build() {
            return new CellsOptions(this);
        }
    }
}
