package qupath.ext.stimage.core;

import org.junit.jupiter.api.Test;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TissueTest {
    /** Typical H&E colours: haematoxylin-rich nuclei, eosin stroma, pale stroma. */
    private static final Color NUCLEUS = new Color(90, 60, 140);
    private static final Color STROMA = new Color(225, 140, 190);
    private static final Color LAVENDER_GLASS = new Color(232, 222, 238);

    private static BufferedImage image(int w, int h, Color fill) {
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setColor(fill);
        g.fillRect(0, 0, w, h);
        g.dispose();
        return img;
    }

    private static void paint(BufferedImage img, Color c, int x, int y, int w, int h) {
        Graphics2D g = img.createGraphics();
        g.setColor(c);
        g.fillRect(x, y, w, h);
        g.dispose();
    }

    @Test
    void glassIsNotTissueAndStainedPixelsAre() {
        int[] bg = Tissue.WHITE;
        assertEquals(0.0, Tissue.fraction(image(50, 50, Color.WHITE), bg));
        assertEquals(1.0, Tissue.fraction(image(50, 50, NUCLEUS), bg));
        assertEquals(1.0, Tissue.fraction(image(50, 50, STROMA), bg), "pale stroma is above 0.3 OD");
        BufferedImage half = image(100, 100, Color.WHITE);
        paint(half, STROMA, 0, 0, 100, 50);
        assertEquals(0.5, Tissue.fraction(half, bg), 1e-12);
    }

    @Test
    void tintedGlassIsMeasuredAgainstItsOwnColour() {
        BufferedImage slide = image(400, 300, LAVENDER_GLASS);
        paint(slide, STROMA, 100, 50, 200, 200);
        paint(slide, NUCLEUS, 150, 100, 40, 40);
        int[] bg = Tissue.background(slide);
        assertArrayEquals(new int[] {232, 222, 238}, bg);
        BufferedImage glassTile = image(64, 64, LAVENDER_GLASS);
        assertEquals(0.0, Tissue.fraction(glassTile, bg));
        BufferedImage tissueTile = image(64, 64, STROMA);
        assertEquals(1.0, Tissue.fraction(tissueTile, bg));
    }

    @Test
    void anImageWithoutGlassAssumesWhite() {
        assertArrayEquals(Tissue.WHITE, Tissue.background(image(100, 100, NUCLEUS)));
    }

    @Test
    void pngIsLosslessAndLargeRegionsFallBackToJpeg() throws Exception {
        BufferedImage img = image(120, 80, STROMA);
        paint(img, NUCLEUS, 10, 10, 30, 30);
        byte[] png = ImageEncoding.png(img);
        assertEquals((byte) 0x89, png[0]);
        assertEquals('P', png[1]);
        BufferedImage back = ImageIO.read(new ByteArrayInputStream(png));
        for (int y = 0; y < 80; y += 7) {
            for (int x = 0; x < 120; x += 7) {
                assertEquals(img.getRGB(x, y), back.getRGB(x, y));
            }
        }
        byte[] small = ImageEncoding.pngOrJpeg(img, 1);
        assertEquals((byte) 0xFF, small[0], "over the limit: JPEG");
        assertEquals((byte) 0xD8, small[1]);
        assertArrayEquals(png, ImageEncoding.pngOrJpeg(img, 0));
        BufferedImage argb = new BufferedImage(4, 4, BufferedImage.TYPE_INT_ARGB);
        BufferedImage rgb = ImageEncoding.toRgb(argb);
        assertEquals(BufferedImage.TYPE_INT_RGB, rgb.getType());
        assertTrue(rgb != argb);
    }
}
