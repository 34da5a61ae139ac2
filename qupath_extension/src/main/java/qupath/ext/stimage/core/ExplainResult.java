package qupath.ext.stimage.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.ArrayList;
import java.util.List;

/**
 * The result of {@code explain}: the tile's nuclei as detections with one score per target, the
 * prediction explained, and how many neighbouring tiles gave it context.
 */
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

    /**
     * @return the neighbouring tiles whose features were held fixed (the tile's spatial context): 0
     *     when the tile was explained alone, null for a model without context (or a backend that
     *     does not say)
     */
    public Integer getContextTiles() {
        return result.has("context_tiles") && !result.get("context_tiles").isJsonNull()
                ? result.get("context_tiles").getAsInt() : null;
    }

    /**
     * The explained tile's line of a run's summary, e.g. "COX6C predicted 2.21, LIME fit R² 0.884",
     * numbers to 3 significant digits. For a model with spatial context it says how the tile was
     * explained: with its neighbouring tiles held fixed (the prediction is then the tile's "gene:
     * mean" measurement), or alone (it can differ from it).
     *
     * @param contextUm the model's context reach in µm (hello's {@code context_um}; 0 for none)
     * @return the line
     */
    public String describe(double contextUm) {
        List<String> targets = getTargets();
        List<Double> prediction = getPrediction();
        List<Double> r2 = getFitR2();
        StringBuilder sb = new StringBuilder();
        for (int g = 0; g < targets.size(); g++) {
            sb.append(g == 0 ? "" : "; ").append(targets.get(g));
            if (g < prediction.size() && prediction.get(g) != null) {
                sb.append(" predicted ").append(String.format("%.3g", prediction.get(g)));
            }
            if (g < r2.size() && r2.get(g) != null) {
                sb.append(", LIME fit R² ").append(String.format("%.3g", r2.get(g)));
            }
        }
        Integer n = getContextTiles();
        if (contextUm > 0 && n != null && n > 0) {
            sb.append(" (with its ").append(n).append(n == 1 ? " neighbouring tile" : " neighbouring tiles")
                    .append(" held fixed, as the tile was predicted)");
        } else if (contextUm > 0 && n != null) {
            sb.append(" (the tile alone: no neighbouring tissue tile, so this can differ from the tile's "
                    + "measurement)");
        } else if (contextUm > 0) {
            // a backend that takes no neighbours
            sb.append(" (for the tile alone: this backend does not use the model's ")
                    .append(contextUm == Math.rint(contextUm) ? String.valueOf((long) contextUm)
                            : String.format("%.3g", contextUm))
                    .append(" µm spatial context in explanations, so this can differ from the tile's measurement)");
        }
        return sb.toString();
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
