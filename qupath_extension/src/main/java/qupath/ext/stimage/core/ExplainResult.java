package qupath.ext.stimage.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.ArrayList;
import java.util.List;

/** The result of {@code explain}: the tile's nuclei as detections with one score per target. */
public final class ExplainResult {
    private final JsonObject result;

    /**
     * @param result the reply's result object
     */
    public ExplainResult(JsonObject result) {
        this.result = result;
    }

    /** @return the gene names explained (or {@code "<GENE> P(high)"}) */
    public List<String> getTargets() {
        return strings("targets");
    }

    /** @return the measurement names the nuclei carry ({@code "LIME: <target>"}) */
    public List<String> getMeasurements() {
        return strings("measurements");
    }

    /** @return the model's prediction on the intact tile, one per target */
    public List<Double> getPrediction() {
        return numbers("prediction");
    }

    /** @return LIME's local R² per target (null entries for occlusion) */
    public List<Double> getFitR2() {
        return numbers("fit_r2");
    }

    /** @return the number of nuclei scored */
    public int getNucleusCount() {
        return result.has("n_nuclei") ? result.get("n_nuclei").getAsInt() : 0;
    }

    /** @return the FeatureCollection of nuclei */
    public JsonObject getGeoJson() {
        return result.has("geojson") ? result.getAsJsonObject("geojson") : new JsonObject();
    }

    private List<String> strings(String key) {
        List<String> out = new ArrayList<>();
        if (result.has(key) && result.get(key).isJsonArray()) {
            for (JsonElement e : result.getAsJsonArray(key)) {
                out.add(e.getAsString());
            }
        }
        return out;
    }

    private List<Double> numbers(String key) {
        List<Double> out = new ArrayList<>();
        if (result.has(key) && result.get(key).isJsonArray()) {
            for (JsonElement e : result.getAsJsonArray(key)) {
                out.add(e.isJsonNull() ? null : e.getAsDouble());
            }
        }
        return out;
    }
}
