package qupath.ext.stimage.client;

import com.google.gson.JsonObject;
import com.google.gson.annotations.SerializedName;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Result of {@code predict}. With format {@code geojson}, {@link #getGeoJson()} is the
 * FeatureCollection of QuPath objects (measurements {@code "<GENE>: mean"} ...); with format
 * {@code table}, {@link #getColumns()} names the columns of {@link #getTable()} (one row per tile,
 * NaN where a value is not a number), with {@link #getBoxes()} and {@link #getNames()}.
 */
public final class PredictResult {
    private String model;
    private List<String> genes;
    private double level;
    @SerializedName("n_tiles")
    private int nTiles;
    private String format;
    private JsonObject geojson;
    private List<String> columns;
    private TableRef values;
    private List<double[]> boxes;
    private List<String> names;
    private SlideInfo slide;
    private transient float[][] table;

    PredictResult() {
    }

    /** @return the model that predicted */
    public String getModel() {
        return model;
    }

    /** @return the genes returned */
    public List<String> getGenes() {
        return genes == null ? List.of() : List.copyOf(genes);
    }

    /** @return the level of the predictive interval */
    public double getLevel() {
        return level;
    }

    /** @return the number of tiles predicted */
    public int getTileCount() {
        return nTiles;
    }

    /** @return {@code geojson} or {@code table} */
    public String getFormat() {
        return format;
    }

    /** @return the FeatureCollection (a copy), or null for format table */
    public JsonObject getGeoJson() {
        return geojson == null ? null : geojson.deepCopy();
    }

    /** @return the FeatureCollection as JSON text, or null for format table */
    public String getGeoJsonString() {
        return geojson == null ? null : Protocol.toJsonString(geojson);
    }

    /** @return the table's column names (format table), else an empty list */
    public List<String> getColumns() {
        return columns == null ? List.of() : List.copyOf(columns);
    }

    /** @return the table: one row per tile, one column per {@link #getColumns()} entry; null for geojson */
    public float[][] getTable() {
        if (table == null) {
            return null;
        }
        float[][] copy = new float[table.length][];
        for (int i = 0; i < table.length; i++) {
            copy[i] = table[i].clone();
        }
        return copy;
    }

    /**
     * @param column a column name, e.g. {@code "ERBB2: mean"}
     * @return its values, one per tile
     * @throws IllegalArgumentException when there is no such column
     */
    public float[] getColumn(String column) {
        int j = columns == null ? -1 : columns.indexOf(column);
        if (j < 0 || table == null) {
            throw new IllegalArgumentException("no column '" + column + "' in this table result; it has "
                    + getColumns());
        }
        float[] out = new float[table.length];
        for (int i = 0; i < table.length; i++) {
            out[i] = table[i][j];
        }
        return out;
    }

    /** @return the tiles' boxes x, y, w, h (format table) */
    public List<double[]> getBoxes() {
        if (boxes == null) {
            return List.of();
        }
        List<double[]> out = new ArrayList<>();
        for (double[] b : boxes) {
            out.add(b.clone());
        }
        return out;
    }

    /** @return the tiles' names, null entries where a tile had none (format table) */
    public List<String> getNames() {
        return names == null ? List.of() : Collections.unmodifiableList(new ArrayList<>(names));
    }

    /** @return the slide read by the server, or null for client tiles */
    public SlideInfo getSlide() {
        return slide;
    }

    TableRef getValuesRef() {
        return values;
    }

    float[][] rawTable() {
        return table;
    }

    void setTable(float[][] table) {
        this.table = table;
    }

    /** Where the table's values are: {@code {"frame": 0, "dtype": "<f4", "shape": [rows, cols]}}. */
    public static final class TableRef {
        private int frame;
        private String dtype;
        private int[] shape;

        TableRef() {
        }

        TableRef(int frame, String dtype, int[] shape) {
            this.frame = frame;
            this.dtype = dtype;
            this.shape = shape.clone();
        }

        /** @return the index of the binary frame of the reply */
        public int getFrame() {
            return frame;
        }

        /** @return the numpy dtype string, {@code <f4} */
        public String getDtype() {
            return dtype;
        }

        /** @return rows, columns */
        public int[] getShape() {
            return shape == null ? null : shape.clone();
        }
    }

    /** The slide of a slide-path request. */
    public static final class SlideInfo {
        private String path;
        private double mpp;
        private long width;
        private long height;

        SlideInfo() {
        }

        /** @return the slide path */
        public String getPath() {
            return path;
        }

        /** @return µm per pixel */
        public double getMpp() {
            return mpp;
        }

        /** @return full-resolution width in pixels */
        public long getWidth() {
            return width;
        }

        /** @return full-resolution height in pixels */
        public long getHeight() {
            return height;
        }
    }
}
