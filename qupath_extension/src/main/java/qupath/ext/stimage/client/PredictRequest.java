package qupath.ext.stimage.client;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * A {@code predict} request: tiles read by the client (encoded PNG or JPEG images, each with its
 * box in full-resolution pixels, at {@code mpp} µm per pixel of the images sent), or a slide file
 * the server reads. Immutable; make one with {@link #builder()}.
 *
 * <pre>{@code
 * PredictRequest req = PredictRequest.builder()
 *         .mpp(0.69).imageId("project/image-1")
 *         .tile(png, x, y, w, h)
 *         .genes(List.of("ERBB2"))
 *         .build();
 * }</pre>
 */
public final class PredictRequest {
    /** Result as a GeoJSON FeatureCollection of QuPath objects. */
    public static final String FORMAT_GEOJSON = "geojson";
    /** Result as a float32 table. */
    public static final String FORMAT_TABLE = "table";

    private final PredictParams params;
    private final List<byte[]> images;
    private final String requestId;
    private final Duration deadline;

    private PredictRequest(Builder b) {
        params = Protocol.copy(b.params, PredictParams.class);
        images = Collections.unmodifiableList(new ArrayList<>(b.images));
        requestId = b.requestId;
        deadline = b.deadline;
    }

    /** @return a new builder */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * The params as sent, with {@code deadline_ms} set.
     *
     * @param defaultDeadline the deadline when the request has none
     * @return the params DTO
     */
    PredictParams toParams(Duration defaultDeadline) {
        PredictParams p = Protocol.copy(params, PredictParams.class);
        p.deadlineMs = Math.max(1L, (deadline != null ? deadline : defaultDeadline).toMillis());
        return p;
    }

    /** @return the encoded tile images, frame i for tile i */
    public List<byte[]> getImages() {
        return images;
    }

    /** @return a copy of the params (without the deadline) */
    public PredictParams getParams() {
        return Protocol.copy(params, PredictParams.class);
    }

    /** @return the request id chosen by the caller, or null for a generated one */
    public String getRequestId() {
        return requestId;
    }

    /** @return the deadline, or null for the client's timeout */
    public Duration getDeadline() {
        return deadline;
    }

    /** @return the number of tiles (0 for a slide request) */
    public int getTileCount() {
        return images.size();
    }

    /** Builds a {@link PredictRequest}. */
    public static final class Builder {
        private final PredictParams params = new PredictParams();
        private final List<byte[]> images = new ArrayList<>();
        private String requestId;
        private Duration deadline;

        private Builder() {
        }

        /**
         * Adds a tile.
         *
         * @param image the encoded PNG or JPEG image (RGB, grey or palette)
         * @param x left of its box in full-resolution pixels
         * @param y top
         * @param width width (&gt; 0)
         * @param height height (&gt; 0)
         * @return this
         */
        public Builder tile(byte[] image, double x, double y, double width, double height) {
            return tile(image, x, y, width, height, null);
        }

        /**
         * Adds a named tile.
         *
         * @param image the encoded PNG or JPEG image
         * @param x left of its box in full-resolution pixels
         * @param y top
         * @param width width (&gt; 0)
         * @param height height (&gt; 0)
         * @param name the object name, or null
         * @return this
         */
        public Builder tile(byte[] image, double x, double y, double width, double height, String name) {
            Objects.requireNonNull(image, "image must not be null");
            if (image.length == 0) {
                throw new IllegalArgumentException("tile " + images.size() + ": the image is empty");
            }
            if (!(width > 0) || !(height > 0) || !Double.isFinite(x) || !Double.isFinite(y)
                    || !Double.isFinite(width) || !Double.isFinite(height)) {
                throw new IllegalArgumentException("tile " + images.size() + ": box [" + x + ", " + y + ", "
                        + width + ", " + height + "] needs finite numbers and a positive width and height");
            }
            if (params.tiles == null) {
                params.tiles = new ArrayList<>();
            }
            params.tiles.add(new PredictParams.TileRef(images.size(), new double[] {x, y, width, height}, name));
            images.add(image.clone());
            return this;
        }

        /**
         * @param mpp µm per pixel of the tile images sent (not of the full-resolution image)
         * @return this
         */
        public Builder mpp(double mpp) {
            if (!(mpp > 0) || !Double.isFinite(mpp)) {
                throw new IllegalArgumentException("mpp must be a positive number of µm per pixel; got " + mpp);
            }
            params.mpp = mpp;
            return this;
        }

        /**
         * A slide file the server reads instead of tiles.
         *
         * @param path absolute path on the server's machine, under one of its --allow-root folders
         * @param region {@code [x, y, w, h]}, or null for all tissue
         * @param mpp µm per pixel when the file has none, or null
         * @return this
         */
        public Builder slide(String path, double[] region, Double mpp) {
            JsonArray r = null;
            if (region != null) {
                if (region.length != 4) {
                    throw new IllegalArgumentException("a region is [x, y, w, h]; got " + region.length + " numbers");
                }
                r = new JsonArray();
                for (double v : region) {
                    r.add(v);
                }
            }
            return slide(path, r, mpp);
        }

        /**
         * A slide file the server reads, with a region given as JSON (a box array or a GeoJSON
         * Polygon/MultiPolygon in full-resolution pixels).
         *
         * @param path absolute path on the server's machine
         * @param region the region, or null for all tissue
         * @param mpp µm per pixel when the file has none, or null
         * @return this
         */
        public Builder slide(String path, JsonElement region, Double mpp) {
            Objects.requireNonNull(path, "path must not be null");
            params.slide = new PredictParams.SlideRef(path, region, mpp);
            return this;
        }

        /**
         * @param model a model name from hello (default: the server's default model)
         * @return this
         */
        public Builder model(String model) {
            params.model = model;
            return this;
        }

        /**
         * @param genes genes to return (default: all)
         * @return this
         */
        public Builder genes(List<String> genes) {
            params.genes = genes == null ? null : new ArrayList<>(genes);
            return this;
        }

        /**
         * @param level level of the predictive interval, in (0, 1) (default 0.9)
         * @return this
         */
        public Builder level(double level) {
            if (!(level > 0 && level < 1)) {
                throw new IllegalArgumentException("level must lie in (0, 1); got " + level);
            }
            params.level = level;
            return this;
        }

        /**
         * @param format {@link #FORMAT_GEOJSON} (default) or {@link #FORMAT_TABLE}
         * @return this
         */
        public Builder format(String format) {
            if (!FORMAT_GEOJSON.equals(format) && !FORMAT_TABLE.equals(format)) {
                throw new IllegalArgumentException("format must be 'geojson' or 'table'; got '" + format + "'");
            }
            params.format = format;
            return this;
        }

        /**
         * @param objectType {@code tile}, {@code detection} or {@code annotation} (geojson)
         * @return this
         */
        public Builder objectType(String objectType) {
            params.objectType = objectType;
            return this;
        }

        /**
         * @param classification a class given to every object (geojson)
         * @return this
         */
        public Builder classification(String classification) {
            params.classification = classification;
            return this;
        }

        /**
         * @param imageId names the image the tiles come from, so that the server fits the stain
         *     normalisation once per image and reuses it for all its tiles
         * @return this
         */
        public Builder imageId(String imageId) {
            params.imageId = imageId;
            return this;
        }

        /**
         * @param deadline the request's deadline (default: the client's timeout)
         * @return this
         */
        public Builder deadline(Duration deadline) {
            if (deadline != null && (deadline.isNegative() || deadline.isZero())) {
                throw new IllegalArgumentException("the deadline must be positive; got " + deadline);
            }
            this.deadline = deadline;
            return this;
        }

        /**
         * @param requestId the request id (1-128 characters; default: a generated one)
         * @return this
         */
        public Builder requestId(String requestId) {
            if (requestId != null && (requestId.isEmpty() || requestId.length() > 128)) {
                throw new IllegalArgumentException("a request id has 1-128 characters; got " + requestId.length());
            }
            this.requestId = requestId;
            return this;
        }

        /**
         * @return the request
         * @throws IllegalArgumentException without tiles and slide, with both, or tiles without mpp
         */
        public PredictRequest build() {
            boolean hasTiles = !images.isEmpty();
            if (hasTiles == (params.slide != null)) {
                throw new IllegalArgumentException("a predict request needs either tiles or a slide, not "
                        + (hasTiles ? "both" : "neither"));
            }
            if (hasTiles && params.mpp == null) {
                throw new IllegalArgumentException("tiles need mpp: the µm per pixel of the tile images sent");
            }
            if (params.genes != null && params.genes.isEmpty()) {
                throw new IllegalArgumentException("genes must not be empty; leave it unset for all genes");
            }
            return new PredictRequest(this);
        }
    }
}
