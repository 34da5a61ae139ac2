package qupath.ext.stimage.core;

import org.junit.jupiter.api.Test;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.ServerException;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The neighbours of an explained tile (a model with spatial context): the tissue tiles of its
 * grid within the reach, on the image, read at the model's resolution with Predict's tissue test;
 * at most max_tiles with the tile. A synthetic image of 9 x 8 tiles of 20 px at the model's own
 * 10 µm/px (200 µm tiles, 500 µm reach: 2.5 tiles), glass in column 5, its grid offset by 7 px.
 */
class ExplainNeighboursTest {
    private static final double TILE_UM = 200;
    private static final double REACH = 500;
    private static final int SIDE = 20;
    private static final int OFFSET = 7;
    private static final int COLS = 9;
    private static final int ROWS = 8;
    private static final int GLASS = 5;

    private final BufferedImage image = synthetic();
    private final TileGeometry geometry = geometry();
    private final int[] background = Tissue.background(image);

    private static TileGeometry geometry() {
        try {
            return new TileGeometry(TILE_UM, SIDE, PixelSize.resolve("synthetic", true, 10, 10, null));
        } catch (StimageException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Pink tissue, a column of glass; the image is the grid plus the offset (no room for another tile). */
    private static BufferedImage synthetic() {
        BufferedImage img = new BufferedImage(OFFSET + COLS * SIDE, OFFSET + ROWS * SIDE, BufferedImage.TYPE_INT_RGB);
        int tissue = new Color(200, 120, 170).getRGB();
        int glass = new Color(242, 241, 244).getRGB();
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                boolean onGlass = x < OFFSET || y < OFFSET || (x - OFFSET) / SIDE == GLASS;
                img.setRGB(x, y, onGlass ? glass : tissue);
            }
        }
        return img;
    }

    private static double[] cell(int row, int col) {
        return new double[] {OFFSET + col * SIDE, OFFSET + row * SIDE, SIDE, SIDE};
    }

    /** The cells within reach of (row, col), on the image, on tissue unless {@code glassToo}, row by row. */
    private static List<double[]> expected(int row, int col, boolean glassToo) {
        List<double[]> out = new ArrayList<>();
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < COLS; c++) {
                if ((r != row || c != col) && Math.hypot(r - row, c - col) * TILE_UM <= REACH * (1 + 1e-9)
                        && (glassToo || c != GLASS)) {
                    out.add(cell(r, c));
                }
            }
        }
        return out;
    }

    private List<TilePipeline.Tile> read(double[] tile, int maxTiles, double minTissue, CancelToken cancel,
            List<int[]> reads) throws Exception {
        return ExplainNeighbours.read(tile, geometry, REACH, image.getWidth(), image.getHeight(), maxTiles,
                background, minTissue, (i, x, y, w, h, ds) -> {
                    assertEquals(1.0, ds, 1e-9, "read at the model's resolution");
                    reads.add(new int[] {x, y, w, h});
                    return image.getSubimage(x, y, w, h);
                }, cancel);
    }

    private static void assertBoxes(List<double[]> expected, List<TilePipeline.Tile> tiles) {
        assertEquals(expected.size(), tiles.size());
        for (int i = 0; i < expected.size(); i++) {
            double[] e = expected.get(i);
            double[] b = tiles.get(i).getBox();
            for (int k = 0; k < 4; k++) {
                assertEquals(e[k], b[k], 1e-9, "neighbour " + i + ", coordinate " + k);
            }
        }
    }

    @Test
    void theTissueTilesOfTheGridWithinReach() throws Exception {
        List<int[]> reads = new ArrayList<>();
        // a tile by the image's left edge and the glass column 5 is within reach of column 3
        List<TilePipeline.Tile> n = read(cell(3, 3), 512, 0.25, null, reads);
        assertBoxes(expected(3, 3, false), n);
        assertEquals(20 - 3, n.size(), "20 cells within 2.5 tiles, 3 of them on glass (column 5)");
        assertEquals(expected(3, 3, true).size(), reads.size(), "every cell within reach read, the tile itself not");
        for (TilePipeline.Tile t : n) {
            BufferedImage img = ImageIO.read(new ByteArrayInputStream(t.getImage()));
            assertEquals(SIDE, img.getWidth());
            assertEquals(SIDE, img.getHeight());
            assertEquals(10, t.getMpp(), 1e-9);
            assertTrue(t.getTissue() >= 0.25);
        }
        // at a corner: only the cells on the image
        assertBoxes(expected(0, 0, false), read(cell(0, 0), 512, 0.25, null, new ArrayList<>()));
        // a minimum tissue of 0 sends glass too, as Predict does
        assertBoxes(expected(3, 3, true), read(cell(3, 3), 512, 0, null, new ArrayList<>()));
    }

    @Test
    void withinMaxTilesTheNearest() throws Exception {
        // max_tiles 5: the tile and its 4 nearest neighbours (one tile away)
        List<TilePipeline.Tile> n = read(cell(3, 2), 5, 0.25, null, new ArrayList<>());
        assertBoxes(List.of(cell(2, 2), cell(3, 1), cell(3, 3), cell(4, 2)), n);
        // a limit above the tile and its neighbours leaves them all
        assertBoxes(expected(3, 2, false), read(cell(3, 2), 21, 0.25, null, new ArrayList<>()));
    }

    @Test
    void cancelStopsTheReads() {
        CancelToken token = new CancelToken();
        token.cancel();
        List<int[]> reads = new ArrayList<>();
        ServerException e = assertThrows(ServerException.class, () -> read(cell(3, 3), 512, 0.25, token, reads));
        assertEquals(ErrorCodes.CANCELLED, e.getCode());
        assertEquals(0, reads.size());
    }
}
