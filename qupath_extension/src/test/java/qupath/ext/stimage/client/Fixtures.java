package qupath.ext.stimage.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/** Locates the repository and reads the protocol fixtures shared with the Python tests. */
final class Fixtures {
    private Fixtures() {
    }

    /** The repository root: system property {@code stimage.repo}, else the first parent of the cwd with tests/fixtures. */
    static Path repo() {
        String prop = System.getProperty("stimage.repo");
        if (prop != null && !prop.isBlank()) {
            return Paths.get(prop).toAbsolutePath();
        }
        Path p = Paths.get("").toAbsolutePath();
        while (p != null) {
            if (Files.isDirectory(p.resolve("tests/fixtures/protocol"))) {
                return p;
            }
            p = p.getParent();
        }
        throw new IllegalStateException("cannot find the repository (tests/fixtures/protocol) above "
                + Paths.get("").toAbsolutePath() + "; pass -Dstimage.repo=/path/to/repo");
    }

    static Path dir() {
        return repo().resolve("tests/fixtures/protocol");
    }

    static List<Path> all() throws IOException {
        try (Stream<Path> s = Files.list(dir())) {
            return s.filter(f -> f.toString().endsWith(".json")).sorted().collect(Collectors.toList());
        }
    }

    static JsonObject load(String name) throws IOException {
        return load(dir().resolve(name + ".json"));
    }

    static JsonObject load(Path file) throws IOException {
        return JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
    }

    static List<byte[]> frames(JsonObject fixture) {
        List<byte[]> out = new ArrayList<>();
        for (JsonElement f : fixture.getAsJsonArray("frames")) {
            JsonObject o = f.getAsJsonObject();
            if (!"base64".equals(o.get("encoding").getAsString())) {
                throw new IllegalArgumentException("unknown frame encoding " + o.get("encoding"));
            }
            out.add(Base64.getDecoder().decode(o.get("data").getAsString()));
        }
        return out;
    }
}
