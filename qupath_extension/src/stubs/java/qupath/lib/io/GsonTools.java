/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.io;

import com.google.gson.JsonElement;
import com.google.gson.JsonParseException;
import qupath.lib.objects.PathObject;

import java.util.List;

public class GsonTools {
    private GsonTools() {
    }

    public static List<PathObject> parseObjectsFromGeoJSON(JsonElement element) throws JsonParseException {
        throw new UnsupportedOperationException("stub");
    }
}
