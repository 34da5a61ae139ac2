package qupath.ext.stimage.core;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** The protocol fixtures shared with the Python tests (tests/fixtures/protocol). */
final class TestFixtures {
    private TestFixtures() {
    }

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
        throw new IllegalStateException("cannot find tests/fixtures/protocol; pass -Dstimage.repo=/path/to/repo");
    }

    /** @return the fixture's header */
    static JsonObject header(String name) throws IOException {
        Path f = repo().resolve("tests/fixtures/protocol/" + name + ".json");
        return JsonParser.parseString(Files.readString(f, StandardCharsets.UTF_8)).getAsJsonObject()
                .getAsJsonObject("header");
    }
}
