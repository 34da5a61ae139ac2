package qupath.ext.stimage.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The result of {@code cells}: the cells as a FeatureCollection of QuPath cell objects, and counts per class. */
public final class CellsResult {
    private final JsonObject result;

    /**
     * @param result the reply's result object
     */
    public CellsResult(JsonObject result) {
        this.result = result;
    }

    /** @return the number of cells */
    public int getCellCount() {
        return result.has("n_cells") ? result.get("n_cells").getAsInt() : Features.features(getGeoJson()).size();
    }

    /** @return cells per class (every class of the cell-type model) */
    public Map<String, Integer> getCounts() {
        Map<String, Integer> out = new LinkedHashMap<>();
        if (result.has("counts") && result.get("counts").isJsonObject()) {
            for (Map.Entry<String, JsonElement> e : result.getAsJsonObject("counts").entrySet()) {
                out.put(e.getKey(), e.getValue().getAsInt());
            }
        }
        return Collections.unmodifiableMap(out);
    }

    /** @return the classes as QuPath shows them (empty without classification) */
    public List<String> getClasses() {
        List<String> out = new ArrayList<>();
        if (result.has("classes") && result.get("classes").isJsonArray()) {
            for (JsonElement e : result.getAsJsonArray("classes")) {
                out.add(e.getAsString());
            }
        }
        return out;
    }

    /** @return the cell-type model's name, or null */
    public String getCellModel() {
        JsonElement e = result.get("cell_model");
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    /** @return the FeatureCollection of cells */
    public JsonObject getGeoJson() {
        return result.has("geojson") ? result.getAsJsonObject("geojson") : new JsonObject();
    }
}
