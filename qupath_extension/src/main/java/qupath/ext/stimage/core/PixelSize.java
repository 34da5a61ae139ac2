package qupath.ext.stimage.core;

/**
 * The µm per pixel of an image's full resolution, from the image's calibration or from the user
 * ("Physical units ... never a silent guess": an image without a pixel size is refused unless the
 * user gives one).
 */
public final class PixelSize {
    /** Smallest and largest plausible µm per pixel (0.01: beyond any optical scanner; 100: a thumbnail). */
    public static final double MIN_UM = 0.01;
    /** @see #MIN_UM */
    public static final double MAX_UM = 100.0;

    private final double widthUm;
    private final double heightUm;
    private final boolean fromUser;

    private PixelSize(double widthUm, double heightUm, boolean fromUser) {
        this.widthUm = widthUm;
        this.heightUm = heightUm;
        this.fromUser = fromUser;
    }

    /**
     * Decides the pixel size: the user's value when given (it overrides the image's), else the
     * image's calibration, else a {@link StimageException}.
     *
     * @param imageName the image's name (for the message)
     * @param calibrated whether the image has a pixel size in µm
     * @param widthUm the image's pixel width in µm (ignored when not calibrated)
     * @param heightUm the image's pixel height in µm (ignored when not calibrated)
     * @param userUm the µm per pixel the user typed, or null / NaN for none
     * @return the pixel size
     * @throws StimageException without a pixel size, or with one out of range
     */
    public static PixelSize resolve(String imageName, boolean calibrated, double widthUm, double heightUm,
            Double userUm) throws StimageException {
        if (userUm != null && !userUm.isNaN()) {
            check(userUm, "the µm per pixel given");
            return new PixelSize(userUm, userUm, true);
        }
        if (!calibrated || !(widthUm > 0) || !(heightUm > 0)) {
            throw new StimageException(new UserMessage(UserMessage.Severity.WARNING, "Image without pixel size",
                    "'" + imageName + "' has no pixel size in µm, and STImage works in physical units (a "
                            + "model's tiles are a fixed number of µm). Set it in the Image tab (double-click "
                            + "'Pixel width'), or type the µm per pixel in the dialog (option 'mpp' in "
                            + "scripts). Slide scanners give about 0.5 µm/px at 20x and 0.25 at 40x.", null));
        }
        check(widthUm, "the image's pixel width");
        check(heightUm, "the image's pixel height");
        return new PixelSize(widthUm, heightUm, false);
    }

    private static void check(double um, String what) throws StimageException {
        if (!(um >= MIN_UM && um <= MAX_UM) || Double.isInfinite(um)) {
            throw new StimageException("Implausible pixel size", what + " is " + um + " µm per pixel; expected "
                    + MIN_UM + " to " + MAX_UM + ". Check the image's pixel size (Image tab).");
        }
    }

    /** @return µm per pixel horizontally */
    public double getWidthUm() {
        return widthUm;
    }

    /** @return µm per pixel vertically */
    public double getHeightUm() {
        return heightUm;
    }

    /** @return the mean of width and height in µm */
    public double getAveragedUm() {
        return (widthUm + heightUm) / 2.0;
    }

    /** @return whether the user gave it */
    public boolean isFromUser() {
        return fromUser;
    }

    @Override
    public String toString() {
        return widthUm == heightUm ? widthUm + " µm/px" : widthUm + " x " + heightUm + " µm/px";
    }
}
