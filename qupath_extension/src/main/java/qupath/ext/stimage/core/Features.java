package qupath.ext.stimage.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.function.BiPredicate;

/**
 * Small operations on the GeoJSON the backend returns (docs/geojson.md): counting features,
 * their centroids, keeping those whose centroid a predicate accepts, and writing the "STImage
 * region" annotation of a whole-image run exactly as the Python writer does.
 */
public final class Features {
    /** Name and class of the annotation a whole-image run puts its objects under. */
    public static final String REGION_NAME = "STImage region";
    /** Its colour, as stimage.qupath writes it. */
    private static final int[] REGION_COLOR = {0, 160, 160};

    private Features() {
    }

    /**
     * @param collection a FeatureCollection (or null)
     * @return its features (empty when none)
     */
    public static JsonArray features(JsonObject collection) {
        if (collection == null || !collection.has("features") || !collection.get("features").isJsonArray()) {
            return new JsonArray();
        }
        return collection.getAsJsonArray("features");
    }

    /**
     * The centroid of a feature's geometry: area-weighted over the outer rings of a Polygon or
     * MultiPolygon (holes ignored: nuclei and tiles have none), the mean of a Point's or a line's
     * positions otherwise.
     *
     * @param feature a GeoJSON Feature
     * @return x, y in full-resolution pixels, or null when it has no usable geometry
     */
    public static double[] centroid(JsonObject feature) {
        JsonElement g = feature.get("geometry");
        if (g == null || !g.isJsonObject()) {
            return null;
        }
        JsonObject geom = g.getAsJsonObject();
        String type = geom.has("type") ? geom.get("type").getAsString() : "";
        JsonArray coords = geom.has("coordinates") && geom.get("coordinates").isJsonArray()
                ? geom.getAsJsonArray("coordinates") : null;
        if (coords == null) {
            return null;
        }
        switch (type) {
            case "Polygon":
                return polygonsCentroid(wrap(coords));
            case "MultiPolygon":
                return polygonsCentroid(coords);
            case "Point":
                return new double[] {coords.get(0).getAsDouble(), coords.get(1).getAsDouble()};
            default:
                return meanOfPositions(coords);
        }
    }

    private static JsonArray wrap(JsonArray polygon) {
        JsonArray a = new JsonArray();
        a.add(polygon);
        return a;
    }

    private static double[] polygonsCentroid(JsonArray polygons) {
        double area = 0;
        double cx = 0;
        double cy = 0;
        for (JsonElement p : polygons) {
            JsonArray ring = p.getAsJsonArray().get(0).getAsJsonArray();
            int n = ring.size();
            for (int i = 0; i + 1 < n; i++) {
                JsonArray a = ring.get(i).getAsJsonArray();
                JsonArray b = ring.get(i + 1).getAsJsonArray();
                double x0 = a.get(0).getAsDouble();
                double y0 = a.get(1).getAsDouble();
                double x1 = b.get(0).getAsDouble();
                double y1 = b.get(1).getAsDouble();
                double cross = x0 * y1 - x1 * y0;
                area += cross;
                cx += (x0 + x1) * cross;
                cy += (y0 + y1) * cross;
            }
        }
        if (Math.abs(area) < 1e-12) {
            return meanOfPositions(polygons);
        }
        return new double[] {cx / (3 * area), cy / (3 * area)};
    }

    private static double[] meanOfPositions(JsonArray nested) {
        double[] acc = new double[3];
        addPositions(nested, acc);
        return acc[2] == 0 ? null : new double[] {acc[0] / acc[2], acc[1] / acc[2]};
    }

    private static void addPositions(JsonElement e, double[] acc) {
        if (!e.isJsonArray()) {
            return;
        }
        JsonArray a = e.getAsJsonArray();
        if (a.size() >= 2 && a.get(0).isJsonPrimitive()) {
            acc[0] += a.get(0).getAsDouble();
            acc[1] += a.get(1).getAsDouble();
            acc[2] += 1;
            return;
        }
        for (JsonElement c : a) {
            addPositions(c, acc);
        }
    }

    /**
     * @param collection a FeatureCollection
     * @param keep accepts a centroid (x, y)
     * @return a new FeatureCollection with the features whose centroid is accepted
     */
    public static JsonObject filterByCentroid(JsonObject collection, BiPredicate<Double, Double> keep) {
        JsonArray kept = new JsonArray();
        for (JsonElement f : features(collection)) {
            double[] c = f.isJsonObject() ? centroid(f.getAsJsonObject()) : null;
            if (c != null && keep.test(c[0], c[1])) {
                kept.add(f);
            }
        }
        JsonObject out = new JsonObject();
        out.addProperty("type", "FeatureCollection");
        out.add("features", kept);
        return out;
    }

    /**
     * The locked "STImage region" annotation over a box (a whole-image run's parent object), with
     * a fresh STImage id, the class and colour stimage.qupath gives it, and its metadata.
     *
     * @param x left in full-resolution pixels
     * @param y top
     * @param w width
     * @param h height
     * @param version the extension's version ({@code metadata.stimage})
     * @return a GeoJSON Feature
     */
    public static JsonObject regionAnnotation(double x, double y, double w, double h, String version) {
        JsonObject f = new JsonObject();
        f.addProperty("type", "Feature");
        f.addProperty("id", StimageIds.newId().toString());
        JsonObject geom = new JsonObject();
        geom.addProperty("type", "Polygon");
        JsonArray ring = new JsonArray();
        double[][] pts = {{x, y}, {x + w, y}, {x + w, y + h}, {x, y + h}, {x, y}};
        for (double[] p : pts) {
            JsonArray a = new JsonArray();
            a.add(p[0]);
            a.add(p[1]);
            ring.add(a);
        }
        JsonArray rings = new JsonArray();
        rings.add(ring);
        geom.add("coordinates", rings);
        f.add("geometry", geom);
        JsonObject props = new JsonObject();
        props.addProperty("objectType", "annotation");
        props.addProperty("name", REGION_NAME);
        JsonObject cls = new JsonObject();
        cls.addProperty("name", REGION_NAME);
        JsonArray color = new JsonArray();
        for (int c : REGION_COLOR) {
            color.add(c);
        }
        cls.add("color", color);
        props.add("classification", cls);
        props.addProperty("isLocked", true);
        JsonObject meta = new JsonObject();
        meta.addProperty("stimage", version);
        props.add("metadata", meta);
        f.add("properties", props);
        return f;
    }
}
