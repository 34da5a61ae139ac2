package qupath.ext.stimage.core;

import com.google.gson.JsonElement;
import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.Set;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StimageIdsTest {

    @Test
    void newIdsHaveThePrefixVersion8AndTheRfcVariant() {
        Set<UUID> seen = new HashSet<>();
        for (int i = 0; i < 2000; i++) {
            UUID id = StimageIds.newId();
            assertTrue(id.toString().startsWith(StimageIds.PREFIX), id.toString());
            assertEquals(8, id.version());
            assertEquals(2, id.variant());
            assertTrue(StimageIds.isStimage(id));
            seen.add(id);
        }
        assertEquals(2000, seen.size(), "ids must not repeat");
    }

    @Test
    void userIdsAndNullAreNotStimage() {
        for (int i = 0; i < 100; i++) {
            assertFalse(StimageIds.isStimage(UUID.randomUUID()));
        }
        assertFalse(StimageIds.isStimage((UUID) null));
        assertFalse(StimageIds.isStimage((String) null));
        assertFalse(StimageIds.isStimage("5714a9e0-0001-4abc-8def-000000000000"), "version 4 with our head is not ours");
        assertTrue(StimageIds.isStimage("5714A9E0-0001-8ABC-8DEF-000000000000"), "case does not matter");
    }

    @Test
    void idsWrittenByThePythonBackendAreRecognised() throws Exception {
        int n = 0;
        for (String fixture : new String[] {"reply_cells_result", "reply_explain_result"}) {
            for (JsonElement f : Features.features(TestFixtures.header(fixture)
                    .getAsJsonObject("result").getAsJsonObject("geojson"))) {
                String id = f.getAsJsonObject().get("id").getAsString();
                assertTrue(StimageIds.isStimage(id), id);
                assertTrue(StimageIds.isStimage(UUID.fromString(id)), id);
                n++;
            }
        }
        assertTrue(n >= 4, "the fixtures hold STImage objects");
    }

    @Test
    void operationsReplaceOnlyTheirOwnKindOfStimageObject() {
        String ours = StimageIds.newId().toString();
        String users = UUID.randomUUID().toString();
        assertTrue(Operation.PREDICT.replaces(ObjectKind.TILE, ours));
        assertFalse(Operation.PREDICT.replaces(ObjectKind.TILE, users), "never the user's tiles");
        assertFalse(Operation.PREDICT.replaces(ObjectKind.CELL, ours), "predict keeps STImage cells");
        assertFalse(Operation.PREDICT.replaces(ObjectKind.ANNOTATION, ours));
        assertTrue(Operation.CELLS.replaces(ObjectKind.CELL, ours));
        assertFalse(Operation.CELLS.replaces(ObjectKind.TILE, ours));
        assertFalse(Operation.CELLS.replaces(ObjectKind.CELL, users));
        assertTrue(Operation.EXPLAIN.replaces(ObjectKind.DETECTION, ours));
        assertFalse(Operation.EXPLAIN.replaces(ObjectKind.DETECTION, users));
        assertFalse(Operation.EXPLAIN.replaces(ObjectKind.CELL, ours));
        for (Operation op : Operation.values()) {
            assertFalse(op.replaces(op.getKind(), null));
        }
    }

    @Test
    void imageIdsAreStablePerImageAndBounded() {
        String a = ImageIds.of("slide 1.svs", "file:/data/slide%201.svs");
        assertEquals(a, ImageIds.of("slide 1.svs", "file:/data/slide%201.svs"));
        assertTrue(a.startsWith("slide 1.svs#"));
        assertFalse(a.equals(ImageIds.of("slide 1.svs", "file:/other/slide%201.svs")),
                "two files of the same name are two images");
        String longName = "x".repeat(2000);
        assertTrue(ImageIds.of(longName, "p").length() <= ImageIds.MAX_LENGTH);
        assertTrue(ImageIds.of(null, null).startsWith("image#"));
    }
}
