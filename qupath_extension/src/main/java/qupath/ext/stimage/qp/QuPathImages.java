package qupath.ext.stimage.qp;

import qupath.ext.stimage.core.ImageEncoding;
import qupath.ext.stimage.core.ImageIds;
import qupath.ext.stimage.core.PixelSize;
import qupath.ext.stimage.core.StimageException;
import qupath.ext.stimage.core.Tissue;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.images.servers.PixelCalibration;
import qupath.lib.regions.RegionRequest;

import java.awt.image.BufferedImage;
import java.io.IOException;

/** What STImage needs to know about a QuPath image: its pixel size, id, glass colour, and that it is RGB. */
public final class QuPathImages {
    /** Longest side of the thumbnail the glass colour is estimated on. */
    static final int THUMBNAIL_SIDE = 1024;

    private QuPathImages() {
    }

    /**
     * @param imageData the image
     * @return its name (the server metadata's, else the path)
     */
    public static String name(ImageData<BufferedImage> imageData) {
        ImageServer<BufferedImage> server = imageData.getServer();
        String n = server.getMetadata().getName();
        return n == null || n.isBlank() ? server.getPath() : n;
    }

    /**
     * @param imageData the image
     * @param userMpp the µm per pixel the user gave, or null
     * @return the pixel size to use
     * @throws StimageException when the image has none and the user gave none
     */
    public static PixelSize pixelSize(ImageData<BufferedImage> imageData, Double userMpp) throws StimageException {
        PixelCalibration cal = imageData.getServer().getPixelCalibration();
        boolean has = cal.hasPixelSizeMicrons();
        return PixelSize.resolve(name(imageData), has, has ? cal.getPixelWidthMicrons() : Double.NaN,
                has ? cal.getPixelHeightMicrons() : Double.NaN, userMpp);
    }

    /**
     * @param imageData the image
     * @return the image id sent with tiles (stable per image, different between images)
     */
    public static String imageId(ImageData<BufferedImage> imageData) {
        return ImageIds.of(name(imageData), imageData.getServer().getPath());
    }

    /**
     * @param imageData the image
     * @throws StimageException unless it is an 8-bit RGB (brightfield) image
     */
    public static void requireRgb(ImageData<BufferedImage> imageData) throws StimageException {
        if (!imageData.getServer().isRGB()) {
            throw new StimageException("Not an RGB image", "'" + name(imageData) + "' is not an 8-bit RGB image. "
                    + "STImage's models read H&E brightfield images; open the RGB scan of the slide.");
        }
    }

    /**
     * The glass colour of an image, estimated on a thumbnail of the whole image.
     *
     * @param server the image server
     * @return r, g, b
     * @throws IOException when the thumbnail cannot be read
     */
    public static int[] background(ImageServer<BufferedImage> server) throws IOException {
        double ds = Math.max(1.0, Math.max(server.getWidth(), server.getHeight()) / (double) THUMBNAIL_SIDE);
        RegionRequest req = RegionRequest.createInstance(server.getPath(), ds, 0, 0, server.getWidth(),
                server.getHeight());
        BufferedImage thumb = server.readRegion(req);
        return thumb == null ? Tissue.WHITE.clone() : Tissue.background(ImageEncoding.toRgb(thumb));
    }
}
