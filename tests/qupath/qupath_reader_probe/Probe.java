import com.google.gson.GsonBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import qupath.lib.common.ColorTools;
import qupath.lib.io.PathIO;
import qupath.lib.objects.PathCellObject;
import qupath.lib.objects.PathObject;

/**
 * Reads GeoJSON with QuPath's own reader (PathIO.readObjects) and prints what QuPath made of
 * each object as one JSON line; with --export OUT IN, writes the objects back with QuPath's
 * own exporter (PathIO.exportObjectsAsGeoJSON, FeatureCollection, pretty printed).
 * Used by tests/qupath/test_qupath_reader.py; see build.sh.
 */
public class Probe {

    public static void main(String[] args) throws Exception {
        if (args.length == 3 && args[0].equals("--export")) {
            List<PathObject> objs = PathIO.readObjects(Path.of(args[2]));
            try (var os = Files.newOutputStream(Path.of(args[1]))) {
                PathIO.exportObjectsAsGeoJSON(os, objs,
                        PathIO.GeoJsonExportOptions.FEATURE_COLLECTION,
                        PathIO.GeoJsonExportOptions.PRETTY_JSON);
            }
            System.out.println("EXPORTED " + objs.size());
            return;
        }
        var gson = new GsonBuilder().serializeSpecialFloatingPointValues().serializeNulls().create();
        for (String a : args) {
            for (PathObject o : PathIO.readObjects(Path.of(a))) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("type", o.getClass().getSimpleName());
                m.put("id", o.getID().toString());
                m.put("name", o.getName());
                var pc = o.getPathClass();
                m.put("classification", pc == null ? null : pc.toString());
                m.put("rgb", pc == null ? null : new int[] {
                        ColorTools.red(pc.getColor()), ColorTools.green(pc.getColor()), ColorTools.blue(pc.getColor())});
                m.put("locked", o.isLocked());
                var roi = o.getROI();
                m.put("geometry", roi == null ? null : roi.getGeometry().getGeometryType());
                m.put("area", roi == null ? null : roi.getArea());
                m.put("nucleusArea", o instanceof PathCellObject c && c.getNucleusROI() != null
                        ? c.getNucleusROI().getArea() : null);
                m.put("measurements", new TreeMap<>(o.getMeasurementList().asMap()));
                m.put("metadata", new TreeMap<>(o.getMetadata()));
                System.out.println(gson.toJson(m));
            }
        }
    }
}
