package qupath.ext.stimage.core;

import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageWriteParam;
import javax.imageio.ImageWriter;
import javax.imageio.stream.ImageOutputStream;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Iterator;

/** Encodes the images sent to the backend (PNG or JPEG, RGB: what the protocol accepts). */
public final class ImageEncoding {
    private ImageEncoding() {
    }

    /**
     * @param image any image QuPath read from an RGB server
     * @return the image as 8-bit RGB ({@code TYPE_INT_RGB}; the same object when it already is)
     */
    public static BufferedImage toRgb(BufferedImage image) {
        if (image.getType() == BufferedImage.TYPE_INT_RGB) {
            return image;
        }
        BufferedImage out = new BufferedImage(image.getWidth(), image.getHeight(), BufferedImage.TYPE_INT_RGB);
        Graphics2D g = out.createGraphics();
        try {
            g.drawImage(image, 0, 0, null);
        } finally {
            g.dispose();
        }
        return out;
    }

    /**
     * @param image an image
     * @return it as PNG (lossless)
     */
    public static byte[] png(BufferedImage image) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(image.getWidth() * image.getHeight() * 2 + 1024);
        try {
            if (!ImageIO.write(toRgb(image), "png", out)) {
                throw new IllegalStateException("no PNG writer in this Java runtime");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /**
     * @param image an image
     * @param quality JPEG quality, 0-1
     * @return it as JPEG (for regions too large to send as PNG)
     */
    public static byte[] jpeg(BufferedImage image, float quality) {
        Iterator<ImageWriter> it = ImageIO.getImageWritersByFormatName("jpeg");
        if (!it.hasNext()) {
            throw new IllegalStateException("no JPEG writer in this Java runtime");
        }
        ImageWriter writer = it.next();
        ByteArrayOutputStream out = new ByteArrayOutputStream(image.getWidth() * image.getHeight() / 2 + 1024);
        try (ImageOutputStream ios = ImageIO.createImageOutputStream(out)) {
            writer.setOutput(ios);
            ImageWriteParam p = writer.getDefaultWriteParam();
            p.setCompressionMode(ImageWriteParam.MODE_EXPLICIT);
            p.setCompressionQuality(quality);
            writer.write(null, new IIOImage(toRgb(image), null, null), p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } finally {
            writer.dispose();
        }
        return out.toByteArray();
    }

    /**
     * PNG, or JPEG at quality 0.95 when the PNG would exceed a size limit.
     *
     * @param image an image
     * @param maxBytes the largest frame the backend takes (hello's {@code max_frame_bytes}); 0 for no limit
     * @return the encoded image
     */
    public static byte[] pngOrJpeg(BufferedImage image, long maxBytes) {
        byte[] png = png(image);
        if (maxBytes <= 0 || png.length <= maxBytes) {
            return png;
        }
        return jpeg(image, 0.95f);
    }
}
