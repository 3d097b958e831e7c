/** A new evaluation: drop or pick a photograph, patient reference and eye, upload with
 * progress, then the result. */
import { History, Predict } from '@ocupredict/client';
import type { Prediction } from '@ocupredict/client';
import { Alert, Box, Button, FormControl, FormControlLabel, FormLabel, LinearProgress, Radio, RadioGroup, Stack, TextField, Typography } from '@mui/material';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useId, useRef, useState } from 'react';

import { unwrap } from '../api/errors';
import { progressFetch } from '../api/upload';
import { ResultView } from '../components/ResultView';
import { FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';

const ACCEPT = '.jpg,.jpeg,.png,.dcm,.dicom,image/jpeg,image/png,application/dicom';

function acceptable(file: File): boolean {
  return /\.(jpe?g|png|dcm|dicom)$/i.test(file.name) || ['image/jpeg', 'image/png', 'application/dicom'].includes(file.type) || file.type === '';
}

function isDicom(file: File): boolean {
  return /\.(dcm|dicom)$/i.test(file.name) || file.type === 'application/dicom' || !/\.(jpe?g|png)$/i.test(file.name);
}

export function EvaluatePage() {
  const { m, f } = useI18n();
  const queryClient = useQueryClient();
  const inputRef = useRef<HTMLInputElement>(null);
  const [file, setFile] = useState<File>();
  const [preview, setPreview] = useState<string>();
  const [patientRef, setPatientRef] = useState('');
  const [eye, setEye] = useState<'left' | 'right' | 'unknown'>('unknown');
  const [progress, setProgress] = useState(0);
  const [dragging, setDragging] = useState(false);
  const [typeError, setTypeError] = useState(false);
  const [result, setResult] = useState<Prediction>();
  const eyeId = useId();

  useEffect(() => {
    if (!file || isDicom(file)) {
      setPreview(undefined);
      return;
    }
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);

  const upload = useMutation({
    mutationFn: (chosen: File) => {
      setProgress(0);
      return unwrap(
        Predict.create({
          body: { file: chosen, patient_ref: patientRef.trim() || undefined, eye },
          fetch: progressFetch(setProgress),
        }),
      );
    },
    onSuccess: (prediction) => {
      setResult(prediction);
      void queryClient.invalidateQueries({ queryKey: ['history'] });
      void queryClient.invalidateQueries({ queryKey: ['stats'] });
    },
  });

  const choose = (chosen: File | undefined) => {
    if (!chosen) return;
    setTypeError(!acceptable(chosen));
    setFile(acceptable(chosen) ? chosen : undefined);
    upload.reset();
  };

  if (result) {
    return (
      <Stack spacing={2}>
        <Typography variant="h4" component="h1">
          {m.evaluate.title}
        </Typography>
        <ResultView
          prediction={result}
          onChange={setResult}
          onExpired={() => {
            // The signed image URL expired: the record again, with a fresh one.
            void unwrap(History.read({ path: { id: result.id } })).then(setResult, () => undefined);
          }}
        />
        <Box>
          <Button
            variant="outlined"
            onClick={() => {
              setResult(undefined);
              setFile(undefined);
              setPatientRef('');
              setEye('unknown');
              upload.reset();
            }}
          >
            {m.evaluate.another}
          </Button>
        </Box>
      </Stack>
    );
  }

  return (
    <Stack spacing={2} component="section" aria-labelledby="evaluate-title">
      <Typography variant="h4" component="h1" id="evaluate-title">
        {m.evaluate.title}
      </Typography>
      <Box
        component="form"
        onSubmit={(e) => {
          e.preventDefault();
          if (file) upload.mutate(file);
        }}
        sx={{ display: 'grid', gap: 2, maxWidth: 640 }}
      >
        <Box
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            choose(e.dataTransfer.files[0]);
          }}
          data-testid="dropzone"
          sx={{
            border: '2px dashed',
            borderColor: dragging ? 'primary.main' : 'grey.500',
            bgcolor: dragging ? 'action.hover' : 'transparent',
            borderRadius: 2,
            p: 3,
            textAlign: 'center',
          }}
        >
          <Typography sx={{ mb: 2 }}>{m.evaluate.drop}</Typography>
          <Button variant="outlined" onClick={() => inputRef.current?.click()}>
            {m.evaluate.pick}
          </Button>
          <input
            ref={inputRef}
            type="file"
            accept={ACCEPT}
            aria-label={m.evaluate.fileLabel}
            data-testid="file-input"
            style={{ position: 'absolute', width: 1, height: 1, opacity: 0, overflow: 'hidden' }}
            tabIndex={-1}
            onChange={(e) => choose(e.target.files?.[0])}
          />
          {file && (
            <Typography sx={{ mt: 2 }} data-testid="chosen-file">
              {f(m.evaluate.selected, { name: file.name })}
            </Typography>
          )}
        </Box>
        {typeError && <Alert severity="error">{m.evaluate.wrongType}</Alert>}
        {preview && (
          <img src={preview} alt={m.evaluate.preview} style={{ maxWidth: 320, width: '100%', height: 'auto', borderRadius: 8 }} />
        )}
        {file && isDicom(file) && <Typography color="text.secondary">{m.evaluate.dicomPreview}</Typography>}
        <TextField
          label={m.evaluate.patientRef}
          value={patientRef}
          onChange={(e) => setPatientRef(e.target.value)}
          slotProps={{ htmlInput: { maxLength: 64 } }}
        />
        <FormControl>
          <FormLabel id={eyeId}>{m.evaluate.eye}</FormLabel>
          <RadioGroup row aria-labelledby={eyeId} value={eye} onChange={(e) => setEye(e.target.value as typeof eye)}>
            <FormControlLabel value="left" control={<Radio />} label={m.eye.left} />
            <FormControlLabel value="right" control={<Radio />} label={m.eye.right} />
            <FormControlLabel value="unknown" control={<Radio />} label={m.eye.unknown} />
          </RadioGroup>
        </FormControl>
        {upload.isPending && (
          <Box role="status" aria-live="polite">
            <Typography>{progress < 1 ? f(m.evaluate.uploading, { p: Math.round(progress * 100) }) : m.evaluate.analysing}</Typography>
            <LinearProgress
              variant={progress < 1 ? 'determinate' : 'indeterminate'}
              value={Math.round(progress * 100)}
              aria-label={m.evaluate.uploading.replace('{p}', String(Math.round(progress * 100)))}
            />
          </Box>
        )}
        <Box>
          <Button type="submit" variant="contained" size="large" disabled={!file || upload.isPending}>
            {m.evaluate.submit}
          </Button>
        </Box>
        <FormError error={upload.error} />
      </Box>
    </Stack>
  );
}
