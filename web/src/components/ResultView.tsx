/**
 * One evaluation: the photograph (with the Grad-CAM heatmap on a switch), the class
 * probabilities with the server's labels, the recommendation in words, the quality gate's
 * reasons, the demo-weights banner, and the doctor's confirmation or correction.
 */
import { History } from '@ocupredict/client';
import type { Prediction } from '@ocupredict/client';
import {
  Alert,
  Box,
  Button,
  Card,
  CardContent,
  FormControl,
  FormControlLabel,
  InputLabel,
  LinearProgress,
  List,
  ListItem,
  MenuItem,
  Select,
  Stack,
  Switch,
  TextField,
  Typography,
} from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useId, useState } from 'react';

import { unwrap } from '../api/errors';
import { useI18n } from '../i18n/i18n';
import { RecommendationExplained } from './Recommendation';
import { ErrorState, FormError, Loading } from './states';

/** What an <img> can show: a DICOM through the API's PNG rendering. */
export function displayUrl(prediction: Prediction): string {
  if (prediction.image.content_type !== 'application/dicom') {
    return prediction.image_url;
  }
  // The thumbnail URL is an app URL signed for this record: its PNG rendering too.
  return prediction.thumbnail_url.replace('format=thumb', 'format=png');
}

export function ProbabilityBars({ prediction }: { prediction: Prediction }) {
  const { m, f, percent } = useI18n();
  return (
    <List dense aria-label={m.result.probabilities} disablePadding>
      {prediction.probabilities.map((p) => {
        const top = p.class_code === prediction.result.class_code;
        return (
          <ListItem key={p.class_code} disableGutters sx={{ display: 'block' }} data-class={p.class_code}>
            <Box sx={{ display: 'flex', justifyContent: 'space-between', gap: 1 }}>
              <Typography component="span" sx={{ fontWeight: top ? 700 : 400 }}>
                {p.label}
                {top ? ` — ${m.result.predicted}` : ''}
              </Typography>
              <Typography component="span" sx={{ fontWeight: top ? 700 : 400 }}>
                {percent(p.probability)}
              </Typography>
            </Box>
            <LinearProgress
              variant="determinate"
              value={Math.round(p.probability * 1000) / 10}
              aria-label={f(m.result.probabilityOf, { label: p.label })}
              color={top ? 'primary' : 'inherit'}
              sx={{ height: 10, borderRadius: 1, mt: 0.5 }}
            />
          </ListItem>
        );
      })}
    </List>
  );
}

function Photo({ prediction, onExpired }: { prediction: Prediction; onExpired: () => void }) {
  const { m, f } = useI18n();
  const [showHeatmap, setShowHeatmap] = useState(false);
  const [classCode, setClassCode] = useState(prediction.result.class_code);
  const selectId = useId();
  const label = prediction.probabilities.find((p) => p.class_code === classCode)?.label ?? classCode;

  const heatmap = useQuery({
    queryKey: ['heatmap', prediction.id, classCode],
    queryFn: async () => {
      const blob = await unwrap(
        History.heatmap({ path: { id: prediction.id }, query: { class_code: classCode }, parseAs: 'blob' }),
      );
      return URL.createObjectURL(blob as Blob);
    },
    enabled: showHeatmap,
    staleTime: Infinity,
    gcTime: 10 * 60_000,
  });

  const src = displayUrl(prediction);
  const [failedSrc, setFailedSrc] = useState<string>();
  return (
    <Stack spacing={1}>
      <Box sx={{ position: 'relative', maxWidth: 512, width: '100%' }}>
        {showHeatmap && heatmap.data ? (
          <img
            src={heatmap.data}
            alt={f(m.result.heatmapAlt, { label })}
            data-testid="heatmap"
            style={{ width: '100%', height: 'auto', display: 'block', borderRadius: 8 }}
          />
        ) : (
          <img
            src={src}
            alt={m.result.photoAlt}
            data-testid="photo"
            width={prediction.image.width}
            height={prediction.image.height}
            style={{ width: '100%', height: 'auto', display: 'block', borderRadius: 8 }}
            onError={() => {
              // A signed URL that expired: fetch the record again (once per URL).
              const expired = Date.parse(prediction.image_url_expires_at) <= Date.now() + 5_000;
              if (failedSrc !== src && expired) {
                setFailedSrc(src);
                onExpired();
              }
            }}
          />
        )}
      </Box>
      <FormControlLabel
        control={<Switch checked={showHeatmap} onChange={(e) => setShowHeatmap(e.target.checked)} />}
        label={m.result.heatmap}
      />
      {showHeatmap && (
        <FormControl size="small" sx={{ maxWidth: 320 }}>
          <InputLabel id={`${selectId}-label`}>{m.result.heatmapClass}</InputLabel>
          <Select
            labelId={`${selectId}-label`}
            label={m.result.heatmapClass}
            value={classCode}
            onChange={(e) => setClassCode(e.target.value)}
          >
            {prediction.probabilities.map((p) => (
              <MenuItem key={p.class_code} value={p.class_code}>
                {p.label}
              </MenuItem>
            ))}
          </Select>
        </FormControl>
      )}
      {showHeatmap && heatmap.isPending && <Loading />}
      {showHeatmap && heatmap.isError && <ErrorState error={heatmap.error} onRetry={() => void heatmap.refetch()} />}
    </Stack>
  );
}

function FeedbackPanel({ prediction, onSaved }: { prediction: Prediction; onSaved: (p: Prediction) => void }) {
  const { m, f } = useI18n();
  const queryClient = useQueryClient();
  const others = prediction.probabilities.filter((p) => p.class_code !== prediction.result.class_code);
  const [editing, setEditing] = useState<'incorrect' | undefined>();
  const [correctClass, setCorrectClass] = useState(prediction.feedback?.correct_class ?? others[0]?.class_code ?? '');
  const [comment, setComment] = useState(prediction.feedback?.comment ?? '');
  const selectId = useId();

  const save = useMutation({
    mutationFn: (body: { verdict: 'correct' | 'incorrect'; correct_class?: string; comment?: string }) =>
      unwrap(History.setFeedback({ path: { id: prediction.id }, body })),
    onSuccess: (updated) => {
      setEditing(undefined);
      onSaved(updated);
      void queryClient.invalidateQueries({ queryKey: ['history'] });
      void queryClient.invalidateQueries({ queryKey: ['stats'] });
    },
  });

  const feedback = prediction.feedback;
  const correctedLabel =
    prediction.probabilities.find((p) => p.class_code === feedback?.correct_class)?.label ?? feedback?.correct_class ?? '';
  return (
    <Box component="section" aria-labelledby={`${selectId}-title`}>
      <Typography variant="h6" component="h3" id={`${selectId}-title`}>
        {m.feedback.title}
      </Typography>
      <Typography data-testid="feedback-state" sx={{ my: 1 }}>
        {!feedback
          ? m.feedback.none
          : feedback.verdict === 'correct'
            ? `✓ ${m.feedback.correctVerdict}`
            : `✎ ${f(m.feedback.incorrectVerdict, { label: correctedLabel })}`}
        {feedback?.comment ? ` — “${feedback.comment}”` : ''}
      </Typography>
      {editing !== 'incorrect' && (
        <Stack direction="row" spacing={1} sx={{ flexWrap: 'wrap', gap: 1 }}>
          <Button
            variant="contained"
            color="success"
            disabled={save.isPending}
            onClick={() => save.mutate({ verdict: 'correct', comment: comment || undefined })}
          >
            {m.feedback.confirm}
          </Button>
          <Button variant="outlined" onClick={() => setEditing('incorrect')} disabled={others.length === 0}>
            {m.feedback.correct}
          </Button>
        </Stack>
      )}
      {editing === 'incorrect' && (
        <Box
          component="form"
          onSubmit={(e) => {
            e.preventDefault();
            save.mutate({ verdict: 'incorrect', correct_class: correctClass, comment: comment.trim() || undefined });
          }}
          sx={{ display: 'grid', gap: 2, maxWidth: 420 }}
        >
          <FormControl>
            <InputLabel id={`${selectId}-class`}>{m.feedback.correctClass}</InputLabel>
            <Select
              labelId={`${selectId}-class`}
              label={m.feedback.correctClass}
              value={correctClass}
              onChange={(e) => setCorrectClass(e.target.value)}
            >
              {others.map((p) => (
                <MenuItem key={p.class_code} value={p.class_code}>
                  {p.label}
                </MenuItem>
              ))}
            </Select>
          </FormControl>
          <TextField
            label={m.feedback.comment}
            value={comment}
            onChange={(e) => setComment(e.target.value)}
            multiline
            minRows={2}
            slotProps={{ htmlInput: { maxLength: 1000 } }}
          />
          <Stack direction="row" spacing={1}>
            <Button type="submit" variant="contained" disabled={save.isPending || !correctClass}>
              {m.feedback.save}
            </Button>
            <Button onClick={() => setEditing(undefined)}>{m.common.cancel}</Button>
          </Stack>
        </Box>
      )}
      <FormError error={save.error} />
    </Box>
  );
}

export function ResultView({
  prediction,
  onChange,
  onExpired,
}: {
  prediction: Prediction;
  onChange: (p: Prediction) => void;
  onExpired: () => void;
}) {
  const { m, f, dateTime } = useI18n();
  const headingId = useId();
  useEffect(() => {
    document.getElementById(headingId)?.focus();
  }, [headingId, prediction.id]);
  const quality = prediction.quality;
  return (
    <Card component="section" aria-labelledby={headingId} variant="outlined" data-testid="result">
      <CardContent>
        <Stack spacing={2}>
          <Typography variant="h5" component="h2" id={headingId} tabIndex={-1}>
            {m.result.title}: {prediction.result.label}
          </Typography>
          {prediction.model.demo && (
            <Alert severity="warning" data-testid="demo-banner">
              {m.result.demo}
            </Alert>
          )}
          <Box>
            <Typography variant="subtitle1" component="h3" sx={{ fontWeight: 700 }}>
              {m.result.recommendation}
            </Typography>
            <RecommendationExplained value={prediction.recommendation} />
          </Box>
          {quality && !quality.gradable && (
            <Alert severity="warning" data-testid="quality-reasons">
              {m.result.ungradable}
              <ul>
                {quality.reasons.map((reason) => (
                  <li key={reason}>{m.reason[reason]}</li>
                ))}
              </ul>
            </Alert>
          )}
          <Box sx={{ display: 'grid', gap: 3, gridTemplateColumns: { xs: '1fr', md: 'minmax(0, 1fr) minmax(0, 1fr)' } }}>
            <Photo key={prediction.id} prediction={prediction} onExpired={onExpired} />
            <Stack spacing={2}>
              <Box>
                <Typography variant="subtitle1" component="h3" sx={{ fontWeight: 700 }}>
                  {m.result.probabilities}
                </Typography>
                <ProbabilityBars prediction={prediction} />
              </Box>
              <Box>
                <Typography variant="body2">{f(m.result.date, { date: dateTime(prediction.created_at) })}</Typography>
                {prediction.patient_ref && (
                  <Typography variant="body2">{f(m.result.patient, { ref: prediction.patient_ref })}</Typography>
                )}
                <Typography variant="body2">{f(m.result.eyeLabel, { eye: m.eye[prediction.eye] })}</Typography>
                {prediction.laterality_conflict && <Alert severity="info">{m.result.lateralityConflict}</Alert>}
                {quality && (
                  <Typography variant="body2">
                    {f(m.result.qualityScore, { score: quality.score.toFixed(2) })}
                  </Typography>
                )}
                <Typography variant="body2" sx={{ color: 'text.secondary' }}>
                  {prediction.image.filename} ·{' '}
                  {f(m.result.model, { version: prediction.model.version, backend: prediction.model.backend })}
                </Typography>
              </Box>
              <FeedbackPanel key={`${prediction.id}-${prediction.feedback?.updated_at ?? ''}`} prediction={prediction} onSaved={onChange} />
            </Stack>
          </Box>
        </Stack>
      </CardContent>
    </Card>
  );
}
