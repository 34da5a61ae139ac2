package qupath.ext.stimage.client;

import com.google.gson.JsonElement;
import com.google.gson.annotations.SerializedName;

import java.util.List;

/**
 * Params of {@code predict}, mirroring the JSON names of docs/protocol.md. Build them with
 * {@link PredictRequest}; fields left null are not sent (the server's defaults apply).
 */
public final class PredictParams {
    String model;
    List<String> genes;
    Double level;
    String format;
    String classification;
    @SerializedName("object_type")
    String objectType;
    @SerializedName("deadline_ms")
    Long deadlineMs;
    @SerializedName("image_id")
    String imageId;
    Double mpp;
    List<TileRef> tiles;
    SlideRef slide;

    PredictParams() {
    }

    /** @return the model name, or null for the server's default */
    public String getModel() {
        return model;
    }

    /** @return the genes asked for, or null for all */
    public List<String> getGenes() {
        return genes;
    }

    /** @return the interval level, or null */
    public Double getLevel() {
        return level;
    }

    /** @return {@code geojson}, {@code table} or null */
    public String getFormat() {
        return format;
    }

    /** @return the class given to every object, or null */
    public String getClassification() {
        return classification;
    }

    /** @return {@code tile}, {@code detection}, {@code annotation} or null */
    public String getObjectType() {
        return objectType;
    }

    /** @return the deadline in ms, or null */
    public Long getDeadlineMs() {
        return deadlineMs;
    }

    /** @return the image id, or null */
    public String getImageId() {
        return imageId;
    }

    /** @return µm per pixel of the tile images sent, or null for a slide request */
    public Double getMpp() {
        return mpp;
    }

    /** @return the tiles, or null for a slide request */
    public List<TileRef> getTiles() {
        return tiles;
    }

    /** @return the slide, or null for a tiles request */
    public SlideRef getSlide() {
        return slide;
    }

    /** One tile: {@code {"frame": i, "box": [x, y, w, h], "name": ...}}. */
    public static final class TileRef {
        private int frame;
        private double[] box;
        private String name;

        TileRef() {
        }

        TileRef(int frame, double[] box, String name) {
            this.frame = frame;
            this.box = box.clone();
            this.name = name;
        }

        /** @return the index of the binary frame holding the image */
        public int getFrame() {
            return frame;
        }

        /** @return x, y, width, height in full-resolution pixels */
        public double[] getBox() {
            return box.clone();
        }

        /** @return the object name, or null */
        public String getName() {
            return name;
        }
    }

    /** A slide the server reads: {@code {"path": ..., "region": [x, y, w, h] or GeoJSON, "mpp": ...}}. */
    public static final class SlideRef {
        private String path;
        private JsonElement region;
        private Double mpp;

        SlideRef() {
        }

        /**
         * @param path absolute path on the server's machine
         * @param region {@code [x, y, w, h]} as a JSON array, a GeoJSON Polygon/MultiPolygon, or null for all tissue
         * @param mpp µm per pixel when the file has none, or null
         */
        public SlideRef(String path, JsonElement region, Double mpp) {
            this.path = path;
            this.region = region == null ? null : region.deepCopy();
            this.mpp = mpp;
        }

        /** @return the path */
        public String getPath() {
            return path;
        }

        /** @return the region, or null */
        public JsonElement getRegion() {
            return region == null ? null : region.deepCopy();
        }

        /** @return the mpp, or null */
        public Double getMpp() {
            return mpp;
        }
    }
}
