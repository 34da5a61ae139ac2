package qupath.ext.stimage;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.core.BackendOptions;
import qupath.ext.stimage.core.CellsOptions;
import qupath.ext.stimage.core.ExplainOptions;
import qupath.ext.stimage.core.Operation;
import qupath.ext.stimage.core.PredictOptions;
import qupath.ext.stimage.core.RunSummary;
import qupath.ext.stimage.core.ScriptLine;
import qupath.ext.stimage.core.TilePipeline;
import qupath.ext.stimage.core.UserMessage;
import qupath.ext.stimage.core.UserMessages;
import qupath.ext.stimage.qp.Runs;
import qupath.lib.images.ImageData;
import qupath.lib.plugins.workflow.DefaultScriptableWorkflowStep;

import java.awt.image.BufferedImage;
import java.util.Map;
import java.util.Objects;

/**
 * The STImage scripting API: the same runs as the Extensions &gt; STImage menu, for scripts and
 * QuPath's "Run for project". Every successful call is recorded in the image's workflow history
 * as its own script line, so "Create script" reproduces it.
 *
 * <pre>{@code
 * import qupath.ext.stimage.STImage
 * selectAnnotations()
 * STImage.predict(getCurrentImageData(), [genes: ['ERBB2', 'GATA3'], batchSize: 32])
 * STImage.detectCells(getCurrentImageData(), [region: 'annotations'])
 * STImage.explain(getCurrentImageData(), [genes: ['ERBB2']])   // the selected tile
 * }</pre>
 *
 * <p>Options (all optional except explain's genes): {@code server} ({@code tcp://127.0.0.1:5557}),
 * {@code timeout} (s), {@code mpp} (µm per pixel, for images without one); predict: {@code model},
 * {@code genes}, {@code region} ({@code selected}: the selected annotations or the whole image,
 * {@code annotations}, {@code image}), {@code batchSize}, {@code minTissue}, {@code level};
 * detectCells: {@code region}, {@code classify}, {@code chunkPx}; explain: {@code model},
 * {@code genes}, {@code method}, {@code target}, {@code numSamples}, {@code seed}, {@code minTissue}
 * (a model with spatial context: the neighbouring tiles sent with the tile, as predict's).
 *
 * <p>A failure throws {@link STImage.RunException} whose message says what was wrong and what to
 * do (e.g. the command that starts the backend).
 */
public final class STImage {
    private static final Logger logger = LoggerFactory.getLogger(STImage.class);

    private STImage() {
    }

    /** A failed run: the message is the {@link UserMessage} a dialog would show. */
    public static final class RunException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        private final transient UserMessage userMessage;

        RunException(UserMessage message, Throwable cause) {
            super(message.toPlainText(), cause);
            this.userMessage = message;
        }

        /** @return what to show the user */
        public UserMessage getUserMessage() {
            return userMessage;
        }
    }

    /** A run as the menu commands start it: with progress and a cancel token. */
    @FunctionalInterface
    interface Run<O> {
        RunSummary run(ImageData<BufferedImage> imageData, O options, TilePipeline.Progress progress,
                CancelToken cancel) throws Exception;
    }

    /**
     * Predicts gene expression on model tiles inside the selected annotations (or the whole
     * image), as child tiles with measurements {@code "<GENE>: mean"}, ... that Measurement Maps
     * draws. A new run replaces the tiles of an earlier one.
     *
     * @param imageData the image
     * @param options options as a map (null for the defaults)
     * @return what was done
     */
    public static RunSummary predict(ImageData<BufferedImage> imageData, Map<String, ?> options) {
        return predict(imageData, PredictOptions.fromMap(options));
    }

    /**
     * @param imageData the image
     * @param options the options
     * @return what was done
     * @see #predict(ImageData, Map)
     */
    public static RunSummary predict(ImageData<BufferedImage> imageData, PredictOptions options) {
        return predict(imageData, options, null, null);
    }

    /**
     * Predicts with progress and cancel (the menu command).
     *
     * @param imageData the image
     * @param options the options
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done
     */
    public static RunSummary predict(ImageData<BufferedImage> imageData, PredictOptions options,
            TilePipeline.Progress progress, CancelToken cancel) {
        return call("predict", Operation.PREDICT, imageData, options, Runs::predict, progress, cancel);
    }

    /**
     * Segments and types the cells inside the selected annotations (or the whole image); cells
     * carry their class, {@code "<Class>: probability"} and {@code "Cell: type entropy"}.
     *
     * @param imageData the image
     * @param options options as a map (null for the defaults)
     * @return what was done, with counts per class
     */
    public static RunSummary detectCells(ImageData<BufferedImage> imageData, Map<String, ?> options) {
        return detectCells(imageData, CellsOptions.fromMap(options));
    }

    /**
     * @param imageData the image
     * @param options the options
     * @return what was done
     * @see #detectCells(ImageData, Map)
     */
    public static RunSummary detectCells(ImageData<BufferedImage> imageData, CellsOptions options) {
        return detectCells(imageData, options, null, null);
    }

    /**
     * Detects cells with progress and cancel (the menu command).
     *
     * @param imageData the image
     * @param options the options
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done
     */
    public static RunSummary detectCells(ImageData<BufferedImage> imageData, CellsOptions options,
            TilePipeline.Progress progress, CancelToken cancel) {
        return call("detectCells", Operation.CELLS, imageData, options, Runs::detectCells, progress, cancel);
    }

    /**
     * Explains the selected tile(s) for some genes: the nuclei come back under the tile with a
     * LIME (or occlusion) score per gene, {@code "LIME: <GENE>"}.
     *
     * @param imageData the image
     * @param options options as a map; {@code genes} is required
     * @return what was done
     */
    public static RunSummary explain(ImageData<BufferedImage> imageData, Map<String, ?> options) {
        return explain(imageData, ExplainOptions.fromMap(options));
    }

    /**
     * @param imageData the image
     * @param options the options
     * @return what was done
     * @see #explain(ImageData, Map)
     */
    public static RunSummary explain(ImageData<BufferedImage> imageData, ExplainOptions options) {
        return explain(imageData, options, null, null);
    }

    /**
     * Explains with progress and cancel (the menu command).
     *
     * @param imageData the image
     * @param options the options
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done
     */
    public static RunSummary explain(ImageData<BufferedImage> imageData, ExplainOptions options,
            TilePipeline.Progress progress, CancelToken cancel) {
        return call("explain", Operation.EXPLAIN, imageData, options, Runs::explain, progress, cancel);
    }

    /**
     * Runs, turning failures into {@link RunException}s and recording the workflow step.
     *
     * @param method the API method name (for the script line)
     * @param operation the operation
     * @param imageData the image
     * @param options the options
     * @param run the run
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @param <O> the options' type
     * @return what was done
     * @throws RunException when the run fails
     */
    private static <O extends BackendOptions> RunSummary call(String method, Operation operation,
            ImageData<BufferedImage> imageData, O options, Run<O> run, TilePipeline.Progress progress,
            CancelToken cancel) {
        Objects.requireNonNull(imageData, "imageData is null: open an image first (getCurrentImageData())");
        Objects.requireNonNull(options, "options");
        RunSummary summary;
        try {
            summary = run.run(imageData, options, progress, cancel);
        } catch (Exception e) {
            UserMessage m = UserMessages.of(e, options.getServer());
            if (m.getSeverity() == UserMessage.Severity.ERROR && !(e instanceof ServerException)) {
                logger.error("STImage {} failed", method, e);
            }
            throw new RunException(m, e);
        }
        record(imageData, operation, method, options);
        return summary;
    }

    /**
     * Adds a run to the image's workflow history as a script line.
     *
     * @param imageData the image
     * @param operation the operation
     * @param method the API method
     * @param options the options
     */
    static void record(ImageData<BufferedImage> imageData, Operation operation, String method,
            BackendOptions options) {
        imageData.getHistoryWorkflow().addStep(new DefaultScriptableWorkflowStep("STImage: " + operation.getTitle(),
                options.toMap(), ScriptLine.of(method, options)));
    }
}
