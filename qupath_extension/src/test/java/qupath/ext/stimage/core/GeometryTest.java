package qupath.ext.stimage.core;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GeometryTest {

    private static PixelSize px(double um) throws StimageException {
        return PixelSize.resolve("test", true, um, um, null);
    }

    @Test
    void pixelSizeComesFromTheImageOrTheUserNeverAGuess() throws Exception {
        PixelSize p = px(0.689);
        assertEquals(0.689, p.getAveragedUm(), 1e-12);
        assertFalse(p.isFromUser());
        PixelSize u = PixelSize.resolve("test", true, 0.689, 0.689, 0.5);
        assertEquals(0.5, u.getWidthUm());
        assertTrue(u.isFromUser(), "the user's value overrides the image's");
        StimageException e = assertThrows(StimageException.class,
                () -> PixelSize.resolve("crop.png", false, Double.NaN, Double.NaN, null));
        assertEquals("Image without pixel size", e.getUserMessage().getTitle());
        assertTrue(e.getUserMessage().getText().contains("crop.png"));
        assertEquals(0.25, PixelSize.resolve("crop.png", false, Double.NaN, Double.NaN, 0.25).getWidthUm());
        assertThrows(StimageException.class, () -> PixelSize.resolve("x", true, 0.0, 0.0, null));
        assertThrows(StimageException.class, () -> PixelSize.resolve("x", false, 1, 1, 500.0));
    }

    @Test
    void tilesOfTheBundledModelOnHer2st() throws Exception {
        // the bundled model: 200 µm tiles at 224 px; HER2ST images: 0.689 µm/px
        TileGeometry g = new TileGeometry(200, 224, px(0.689));
        assertEquals(290, g.getTileWidthPx());
        assertEquals(290, g.getTileHeightPx());
        assertEquals(200.0 / 224, g.getModelMpp(), 1e-12);
        assertEquals((200.0 / 224) / 0.689, g.getReadDownsample(), 1e-12);
        // QuPath reads round(290 / downsample) = 224 px; the mpp sent follows from that
        int read = (int) Math.round(290 / g.getReadDownsample());
        assertEquals(224, read);
        double mpp = g.sentMpp(290, read);
        assertEquals(290 * 0.689 / 224, mpp, 1e-12);
        assertTrue(g.coversTile(read, read, mpp, 0.05));
        assertFalse(g.coversTile(read, read, mpp * 1.2, 0.05), "a wrong µm/px is caught before the backend");
        assertTrue(g.isTileBox(290, 290, 0.05));
        assertFalse(g.isTileBox(145, 145, 0.05));
    }

    @Test
    void coarserImagesAreUpsampledAndAnisotropicPixelsHandled() throws Exception {
        TileGeometry g = new TileGeometry(100, 224, px(2.0));
        assertEquals(50, g.getTileWidthPx());
        assertTrue(g.getReadDownsample() < 1);
        TileGeometry a = new TileGeometry(200, 224, PixelSize.resolve("a", true, 0.5, 0.25, null));
        assertEquals(400, a.getTileWidthPx());
        assertEquals(800, a.getTileHeightPx());
        assertThrows(IllegalArgumentException.class, () -> new TileGeometry(0, 224, px(0.5)));
    }

    @Test
    void insideImage() {
        assertTrue(TileGeometry.insideImage(0, 0, 290, 290, 3200, 3200));
        assertTrue(TileGeometry.insideImage(2910, 2910, 290, 290, 3200, 3200));
        assertFalse(TileGeometry.insideImage(2911, 0, 290, 290, 3200, 3200));
        assertFalse(TileGeometry.insideImage(-1, 0, 290, 290, 3200, 3200));
    }

    @Test
    void chunksCoverTheRegionOnceWithMarginsClippedToTheImage() {
        int w = 1000;
        int h = 700;
        List<RegionChunks.Chunk> chunks = RegionChunks.split(100, 50, 900, 700, 256, 32, w, h);
        // region clipped to the image: x 100..1000, y 50..700
        assertEquals(4 * 3, chunks.size());
        for (int y = 0; y < h; y += 7) {
            for (int x = 0; x < w; x += 7) {
                int owners = 0;
                for (RegionChunks.Chunk c : chunks) {
                    if (c.owns(x + 0.5, y + 0.5)) {
                        owners++;
                        assertTrue(x >= c.getReadX() && x < c.getReadX() + c.getReadWidth());
                    }
                }
                boolean inRegion = x >= 100 && y >= 50;
                assertEquals(inRegion ? 1 : 0, owners, "pixel " + x + "," + y);
            }
        }
        RegionChunks.Chunk first = chunks.get(0);
        assertEquals(100 - 32, first.getReadX());
        assertEquals(50 - 32, first.getReadY());
        assertEquals(256 + 64, first.getReadWidth());
        RegionChunks.Chunk last = chunks.get(chunks.size() - 1);
        assertEquals(w, last.getReadX() + last.getReadWidth(), "the margin stops at the image edge");
        assertTrue(RegionChunks.split(2000, 0, 10, 10, 256, 32, w, h).isEmpty());
        assertEquals(1.0, RegionChunks.downsampleToFit(1088, 1088, 4096));
        assertEquals(2.0, RegionChunks.downsampleToFit(8192, 100, 4096));
    }
}
